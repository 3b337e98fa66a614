"""The UI definitions Blender cannot draw without a window: icons and panel placement are valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

ADDON_DIR = Path(__file__).resolve().parents[2] / "blender_addon"


def test_every_icon_name_exists_in_this_blender():
    valid = {item.identifier for item in bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items}
    used = set()
    for path in ADDON_DIR.rglob("*.py"):
        used |= set(re.findall(r'icon="([A-Z0-9_]+)"', path.read_text()))
        for block in re.findall(r"STATE_ICONS = \{(.*?)\}", path.read_text(), re.S):
            used |= set(re.findall(r':\s*"([A-Z0-9_]+)"', block))
    assert used and used <= valid, sorted(used - valid)


def test_panels_sit_in_one_sidebar_tab_in_three_editors(addon):
    from blender_addon import panels
    spaces = {cls.bl_space_type for cls in panels.classes}
    assert spaces == {"VIEW_3D", "IMAGE_EDITOR", "NODE_EDITOR"}
    assert {cls.bl_category for cls in panels.classes} == {"Neural Textures"}
    labels = [cls.bl_label for cls in panels.classes if cls.bl_space_type == "VIEW_3D"]
    assert labels == ["Generate Texture", "Train From Image", "Variations & Blend", "Stylize Render", "Jobs"]
    assert all(cls.is_registered for cls in panels.classes)
