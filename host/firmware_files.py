"""What goes onto the board: the firmware modules plus the robot description.

One list, used by `host flash` (mpremote onto a real or virtual board) and by
`host sim --preload` (straight into the virtual flash directory).
"""

import json
import shutil
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
HARDWARE_DIR = Path(__file__).resolve().parent.parent / "hardware"
ROBOT_FILE = HARDWARE_DIR / "gen0.json"
ROBOT_NAME_ON_BOARD = "robot.json"

try:  # installed (non-editable): find the package data instead of the source tree
    import polyniod_firmware
    import polyniod_hardware

    FIRMWARE_DIR = Path(polyniod_firmware.__file__).resolve().parent
    HARDWARE_DIR = Path(polyniod_hardware.__file__).resolve().parent
    ROBOT_FILE = HARDWARE_DIR / "gen0.json"
except ImportError:  # pragma: no cover - running from a bare checkout
    pass


def load_robot(path=None):
    """The robot description (pin map, limits, rates) as a dict."""
    path = Path(path) if path else ROBOT_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        from host.errors import UserError

        raise UserError(f"robot description {path} not found; pass an existing --robot FILE")
    except ValueError as e:
        from host.errors import UserError

        raise UserError(f"robot description {path} is not valid JSON ({e}); fix the file")


def firmware_files(robot_file=None):
    """[(source path, name on the board)] for every file the board needs."""
    files = [(p, p.name) for p in sorted(FIRMWARE_DIR.glob("*.py")) if p.name != "__init__.py"]
    files.append((Path(robot_file) if robot_file else ROBOT_FILE, ROBOT_NAME_ON_BOARD))
    return files


def install_into(directory, robot_file=None):
    """Copy the firmware into a local directory (the virtual Gen0's flash)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for src, name in firmware_files(robot_file):
        tmp = directory / (name + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(directory / name)
