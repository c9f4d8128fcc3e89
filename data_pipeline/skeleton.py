"""Human body topology shared by the synthetic humanoid and the pose / DensePose modalities.

Joint order, limb pairs and body-part indices are part of the data format: a keypoint array
``[T, P, K, 3]`` is indexed by ``JOINTS`` and a DensePose part index by ``BODY_PARTS``.
"""

JOINTS = (
    "head",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "pelvis",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
)
JOINT_INDEX = {name: i for i, name in enumerate(JOINTS)}

# Bones drawn by the skeleton renderer, as (parent, child) joint indices.
LIMBS = tuple(
    (JOINT_INDEX[a], JOINT_INDEX[b])
    for a, b in (
        ("head", "neck"),
        ("neck", "right_shoulder"),
        ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"),
        ("neck", "left_shoulder"),
        ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"),
        ("neck", "pelvis"),
        ("pelvis", "right_hip"),
        ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"),
        ("pelvis", "left_hip"),
        ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"),
    )
)

# DensePose-style body parts; index 0 is reserved for "not a body".
BODY_PARTS = (
    "background",
    "torso",
    "head",
    "right_upper_arm",
    "right_lower_arm",
    "left_upper_arm",
    "left_lower_arm",
    "right_upper_leg",
    "right_lower_leg",
    "left_upper_leg",
    "left_lower_leg",
    "right_hand",
    "left_hand",
    "right_foot",
    "left_foot",
)
PART_INDEX = {name: i for i, name in enumerate(BODY_PARTS)}
