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
    view3d = [cls for cls in panels.classes if cls.bl_space_type == "VIEW_3D"]
    labels = [cls.bl_label for cls in view3d if not getattr(cls, "bl_parent_id", "")]
    assert labels == ["Generate Texture", "Train From Image", "Variations & Blend", "Stylize Render", "Jobs"]
    children = {cls.bl_label: cls.bl_parent_id for cls in view3d if getattr(cls, "bl_parent_id", "")}
    assert children == {"Size & Seed": "NEURAL_PT_view3d_generate", "Material": "NEURAL_PT_view3d_generate",
                        "Blend": "NEURAL_PT_view3d_vae", "Animation": "NEURAL_PT_view3d_style",
                        "New Style": "NEURAL_PT_view3d_style"}
    assert all(cls.is_registered for cls in panels.classes)


def _addon_operators():
    from blender_addon import operators
    return [cls for module in operators.MODULES for cls in module.classes]


def _property_groups():
    from blender_addon import preferences, properties
    return [*properties.classes, *preferences.classes]


# Operators that change Blender data (images, materials, scene settings): undoable.
DATA_CHANGING = {"neural.generate_texture", "neural.generate_from_image", "neural.make_material",
                 "neural.vae_variations", "neural.vae_blend", "neural.stylize_image", "neural.setup_motion_vectors",
                 "neural.random_seed", "neural.texture_size", "neural.more_like_this"}


def test_every_operator_has_poll_description_prefixed_label_and_undo_where_it_changes_data(addon):
    ops = _addon_operators()
    assert len(ops) >= 18
    for cls in ops:
        assert "poll" in cls.__dict__, f"{cls.bl_idname} has no poll()"
        assert (cls.__doc__ or "").strip(), f"{cls.bl_idname} has no description"
        assert cls.bl_label.startswith("Neural Textures: "), f"{cls.bl_idname}: F3 label '{cls.bl_label}'"
        if cls.bl_idname in DATA_CHANGING:
            assert "UNDO" in cls.bl_options, f"{cls.bl_idname} changes data but is not undoable"
    assert DATA_CHANGING <= {cls.bl_idname for cls in ops}


def test_every_property_has_a_tooltip(addon):
    missing = []
    structs = [(cls.__name__, cls.bl_rna) for cls in _property_groups()]
    structs += [(cls.bl_idname, getattr(bpy.ops.neural, cls.bl_idname.split(".")[1]).get_rna_type())
                for cls in _addon_operators()]
    inherited = {"rna_type", "name", "bl_idname"}  # Blender's own (PropertyGroup name, preferences id)
    for name, rna in structs:
        for prop in rna.properties:
            if prop.identifier in inherited or prop.is_hidden:
                continue
            if not prop.description.strip():
                missing.append(f"{name}.{prop.identifier}")
            if prop.type == "ENUM":  # static items (model lists are made with their descriptions)
                missing += [f"{name}.{prop.identifier}:{i.identifier}" for i in prop.enum_items
                            if not i.description.strip()]
    assert missing == [], "\n".join(missing)


def test_manifest_passes_blenders_extension_validator(tmp_path):
    """``blender --command extension validate``, run from the validator shipped inside the bpy package."""
    import subprocess
    import sys
    validator = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    assert validator.is_file(), "Blender's extension validator is not in the bpy package"
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import build
    zip_path = build.build_package(tmp_path / "dist")
    for target in (ADDON_DIR, zip_path):
        proc = subprocess.run([sys.executable, str(validator), "validate", str(target)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Success" in proc.stdout
