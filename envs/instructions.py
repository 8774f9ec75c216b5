"""Task instructions: canonical strings and paraphrases for training-time augmentation.

This module owns every piece of language the suites produce.

- **Meta-World**: the canonical instruction of a task is LeRobot's description for it (read
  from the `metaworld_config.json` that lerobot 0.4.4 ships, so our task strings are
  byte-identical to those of LeRobot's Meta-World datasets and evaluations), plus three
  hand-written paraphrases per task below.
- **Tabletop**: instructions are built from a family template and the goal objects'
  colors ("push the red block onto the cyan zone"); each family has three paraphrase
  templates.

Datasets store the canonical string as the frame's `task`; the paraphrases go to
`meta/paraphrases.json` keyed by that canonical string (see `vla.envs.recorder`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

# --- Meta-World ------------------------------------------------------------------------

# Three paraphrases per Meta-World v3 task; the canonical string comes from LeRobot.
METAWORLD_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "assembly-v3": (
        "pick up the ring nut and put it on the peg",
        "grab the nut and slide it down over the peg",
        "place the nut onto the peg",
    ),
    "basketball-v3": (
        "put the ball into the hoop",
        "pick up the basketball and drop it in the basket",
        "score the ball in the basket",
    ),
    "bin-picking-v3": (
        "move the puck from the left bin to the right bin",
        "pick the puck out of one bin and drop it in the other",
        "transfer the puck between the bins",
    ),
    "box-close-v3": (
        "put the lid on the box",
        "pick up the cover and close the box",
        "close the box with its lid",
    ),
    "button-press-topdown-v3": (
        "push the button down from above",
        "press the button from the top",
        "press down on the button",
    ),
    "button-press-topdown-wall-v3": (
        "reach over the wall and press the button down",
        "press the button from above, avoiding the wall",
        "go around the wall and push the button from the top",
    ),
    "button-press-v3": (
        "push the button",
        "press the button in front of you",
        "push the button forward",
    ),
    "button-press-wall-v3": (
        "go around the wall and press the button",
        "avoid the wall and push the button",
        "press the button behind the wall",
    ),
    "coffee-button-v3": (
        "press the coffee machine's button",
        "push the button of the coffee maker",
        "start the coffee machine by pressing its button",
    ),
    "coffee-pull-v3": (
        "pull the mug out from the coffee machine",
        "take the cup away from the coffee maker",
        "drag the mug back from under the coffee machine",
    ),
    "coffee-push-v3": (
        "push the mug under the coffee machine",
        "slide the cup beneath the coffee maker",
        "move the mug to the coffee machine",
    ),
    "dial-turn-v3": (
        "turn the dial half a circle",
        "spin the knob by 180 degrees",
        "rotate the dial around",
    ),
    "disassemble-v3": (
        "lift the nut off the peg",
        "take the ring nut off the peg",
        "remove the nut from the peg",
    ),
    "door-close-v3": (
        "shut the door",
        "push the door closed",
        "swing the door shut",
    ),
    "door-lock-v3": (
        "turn the lock clockwise to lock the door",
        "lock the door",
        "rotate the door lock to the locked position",
    ),
    "door-open-v3": (
        "pull the door open",
        "open the door",
        "swing the door open",
    ),
    "door-unlock-v3": (
        "turn the lock counter-clockwise to unlock the door",
        "unlock the door",
        "rotate the door lock to the unlocked position",
    ),
    "drawer-close-v3": (
        "close the drawer",
        "push the drawer shut",
        "slide the drawer closed",
    ),
    "drawer-open-v3": (
        "pull the drawer open",
        "slide the drawer out",
        "open the drawer by its handle",
    ),
    "faucet-close-v3": (
        "turn the faucet clockwise",
        "close the tap",
        "turn the faucet off",
    ),
    "faucet-open-v3": (
        "turn the faucet counter-clockwise",
        "open the tap",
        "turn the faucet on",
    ),
    "hammer-v3": (
        "use the hammer to drive the nail into the wall",
        "pick up the hammer and hit the screw",
        "hammer the nail in",
    ),
    "hand-insert-v3": (
        "put the gripper into the hole",
        "insert the hand into the hole in the table",
        "move the gripper down into the hole",
    ),
    "handle-press-side-v3": (
        "push the handle down from the side",
        "press the side handle down",
        "press down on the handle sideways",
    ),
    "handle-press-v3": (
        "push the handle down",
        "press down on the handle",
        "lower the handle",
    ),
    "handle-pull-side-v3": (
        "lift the handle up from the side",
        "pull the side handle up",
        "raise the handle sideways",
    ),
    "handle-pull-v3": (
        "lift the handle up",
        "pull up on the handle",
        "raise the handle",
    ),
    "lever-pull-v3": (
        "pull the lever down",
        "rotate the lever down by 90 degrees",
        "bring the lever down",
    ),
    "peg-insert-side-v3": (
        "put the peg into the hole from the side",
        "insert the peg sideways into the hole",
        "slide the peg into the hole",
    ),
    "peg-unplug-side-v3": (
        "pull the peg out sideways",
        "unplug the peg from the side",
        "take the peg out of its hole",
    ),
    "pick-out-of-hole-v3": (
        "lift the puck out of the hole",
        "take the puck out of the hole",
        "pick the puck up out of the hole",
    ),
    "pick-place-v3": (
        "pick up the puck and put it at the goal",
        "move the puck to the target by carrying it",
        "grasp the puck and place it on the goal",
    ),
    "pick-place-wall-v3": (
        "carry the puck over the wall to the goal",
        "pick up the puck and place it behind the wall",
        "lift the puck past the wall and put it down at the target",
    ),
    "plate-slide-back-side-v3": (
        "slide the plate out of the cabinet sideways",
        "pull the plate out of the cabinet from the side",
        "take the plate out of the cabinet sideways",
    ),
    "plate-slide-back-v3": (
        "slide the plate out of the cabinet",
        "pull the plate back from the cabinet",
        "take the plate out of the cabinet",
    ),
    "plate-slide-side-v3": (
        "push the plate into the cabinet from the side",
        "slide the plate sideways into the cabinet",
        "move the plate into the cabinet sideways",
    ),
    "plate-slide-v3": (
        "push the plate into the cabinet",
        "slide the plate into the cabinet",
        "move the plate into the cabinet",
    ),
    "push-back-v3": (
        "push the puck back to the goal",
        "slide the puck backwards to the target",
        "move the puck to the goal by pushing it",
    ),
    "push-v3": (
        "push the puck to the target",
        "slide the puck to the goal",
        "move the puck to the goal by pushing it",
    ),
    "push-wall-v3": (
        "push the puck around the wall to the goal",
        "slide the puck past the wall to the target",
        "avoid the wall while pushing the puck to the goal",
    ),
    "reach-v3": (
        "move the gripper to the goal",
        "reach the target position",
        "put the hand at the goal",
    ),
    "reach-wall-v3": (
        "reach over the wall to the goal",
        "move the gripper past the wall to the target",
        "go around the wall and reach the goal",
    ),
    "shelf-place-v3": (
        "put the puck on the shelf",
        "pick up the puck and place it on the shelf",
        "move the puck onto the shelf",
    ),
    "soccer-v3": (
        "push the ball into the goal",
        "score a goal with the soccer ball",
        "kick the ball into the net",
    ),
    "stick-pull-v3": (
        "use the stick to pull the box",
        "grab the stick and drag the box with it",
        "pull the box toward you with the stick",
    ),
    "stick-push-v3": (
        "use the stick to push the box",
        "grab the stick and push the box with it",
        "push the box away with the stick",
    ),
    "sweep-into-v3": (
        "sweep the puck into the hole",
        "push the puck into the hole in the table",
        "slide the puck into the hole",
    ),
    "sweep-v3": (
        "sweep the puck off the table",
        "push the puck off the edge of the table",
        "slide the puck off the table",
    ),
    "window-close-v3": (
        "slide the window shut",
        "close the window",
        "push the window closed",
    ),
    "window-open-v3": (
        "slide the window open",
        "open the window",
        "push the window open",
    ),
}


@functools.cache
def _lerobot_metaworld_config() -> dict:
    """LeRobot's Meta-World table (descriptions and difficulty groups), read without
    importing lerobot (which would pull in torch)."""
    spec = importlib.util.find_spec("lerobot")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "lerobot is not installed; the Meta-World task descriptions and difficulty groups "
            "come from lerobot 0.4.4's envs/metaworld_config.json. Install the project's "
            "pinned stack (pip install -e .)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "envs" / "metaworld_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; this project expects lerobot==0.4.4, which ships it.")
    return json.loads(path.read_text())


def metaworld_descriptions() -> dict[str, str]:
    """Canonical instruction of every Meta-World v3 task, keyed by task name."""
    return dict(_lerobot_metaworld_config()["TASK_DESCRIPTIONS"])


def metaworld_difficulty_groups() -> dict[str, list[str]]:
    """LeRobot's difficulty groups: easy / medium / hard / very_hard -> task names."""
    return {k: list(v) for k, v in _lerobot_metaworld_config()["DIFFICULTY_TO_TASKS"].items()}


def metaworld_instruction(task: str) -> str:
    """Canonical instruction for a Meta-World task name such as 'push-v3'."""
    descriptions = metaworld_descriptions()
    if task not in descriptions:
        raise ValueError(f"no description for Meta-World task {task!r}; known: {sorted(descriptions)}")
    return descriptions[task]


def metaworld_paraphrases(task: str) -> list[str]:
    """Paraphrases of a Meta-World task's instruction (canonical string excluded)."""
    if task not in METAWORLD_PARAPHRASES:
        raise ValueError(f"no paraphrases for Meta-World task {task!r}; known: {sorted(METAWORLD_PARAPHRASES)}")
    return list(METAWORLD_PARAPHRASES[task])


# --- Tabletop --------------------------------------------------------------------------

# family -> (canonical template, paraphrase templates). Fields: {block}, {zone}.
TABLETOP_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "push": (
        "push the {block} block onto the {zone} zone",
        (
            "slide the {block} block to the {zone} zone",
            "move the {block} cube onto the {zone} area",
            "get the {block} block into the {zone} circle",
        ),
    ),
    "touch": (
        "touch the {block} block",
        (
            "tap the {block} block",
            "put the gripper on the {block} cube",
            "reach down and touch the {block} block",
        ),
    ),
    "reach": (
        "move the gripper to the {zone} zone",
        (
            "go to the {zone} zone",
            "bring the gripper down over the {zone} area",
            "reach the {zone} circle",
        ),
    ),
}
TABLETOP_TEMPLATES["reach_slots"] = TABLETOP_TEMPLATES["reach"]  # same goals, easier (slotted) scenes
TABLETOP_TEMPLATES["reach_fixed"] = TABLETOP_TEMPLATES["reach"]  # same goals, one fixed scene layout


def tabletop_instruction(family: str, block: str | None = None, zone: str | None = None) -> str:
    """Canonical instruction of a tabletop goal, e.g. ('push', 'red', 'cyan')."""
    if family not in TABLETOP_TEMPLATES:
        raise ValueError(f"unknown tabletop family {family!r}; choose from {list(TABLETOP_TEMPLATES)}")
    return TABLETOP_TEMPLATES[family][0].format(block=block, zone=zone)


def tabletop_paraphrases(family: str, block: str | None = None, zone: str | None = None) -> list[str]:
    """Paraphrases of a tabletop goal's instruction (canonical string excluded)."""
    if family not in TABLETOP_TEMPLATES:
        raise ValueError(f"unknown tabletop family {family!r}; choose from {list(TABLETOP_TEMPLATES)}")
    return [t.format(block=block, zone=zone) for t in TABLETOP_TEMPLATES[family][1]]
