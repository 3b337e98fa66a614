"""Build data/content/'s photographs from Debian packages and scikit-image (provenance tool).

Run once by hand; the product never runs it. It needs the packages extracted with
`dpkg-deb -x PKG.deb /tmp/wp/<deb basename>` (Debian bookworm .debs fetched with `apt-get download`)
and gcompris-qt-data's Qt resource files unpacked by `unpack_rcc` below into /tmp/gc/x.
Every image kept is listed with its author and licence (read from the package's copyright file, the
KDE wallpaper metadata or gcompris' per-folder README) in data/content/SOURCES.md.

    python tools/collect_content_photos.py --wp /tmp/wp --gc /tmp/gc/x/gcompris --out data/content

Processing, the same for every file: decode, convert to 8-bit RGB (ICC profiles ignored), cut into
1 or 2 non-overlapping tiles along the long side (each tile cropped to at most 3:2), Lanczos-resize so the
shorter side is 320 px, save as JPEG quality 85. Tiles that are nearly flat (little contrast or
edge energy) are dropped: they teach a style network nothing.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import struct
import zlib

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None
SHORT = 320
MAX_ASPECT = 1.5
MIN_TILE_SHORT = 480  # a tile is only cut if it still downsamples >= 1.5x (keeps it sharp)


def unpack_rcc(path: str, out: str) -> list[str]:
    """Extract the files of one Qt .rcc resource bundle (format versions 1-3)."""
    b = open(path, "rb").read()
    assert b[:4] == b"qres", path
    ver, tree, data, names = struct.unpack(">4I", b[4:20])
    node = 14 if ver == 1 else 22
    written = []

    def name(off):
        n = struct.unpack(">H", b[names + off:names + off + 2])[0]
        return b[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    def walk(i, prefix):
        o = tree + i * node
        noff, flags = struct.unpack(">IH", b[o:o + 6])
        nm = name(noff) if i else ""
        if flags & 2:
            count, first = struct.unpack(">II", b[o + 6:o + 14])
            for c in range(first, first + count):
                walk(c, prefix + nm + "/" if nm else prefix)
            return
        doff = struct.unpack(">I", b[o + 10:o + 14])[0]
        size = struct.unpack(">I", b[data + doff:data + doff + 4])[0]
        blob = b[data + doff + 4:data + doff + 4 + size]
        if flags & 4:  # zstd: not needed for the images
            return
        if flags & 1:
            blob = zlib.decompress(blob[4:])
        dst = os.path.join(out, prefix + nm)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "wb").write(blob)
        written.append(prefix + nm)

    walk(0, "")
    return written


def tiles(w: int, h: int, max_tiles: int) -> list[tuple[int, int, int, int]]:
    """Up to max_tiles non-overlapping boxes along the long side, each at most 3:2."""
    landscape = w >= h
    long_, short = (w, h) if landscape else (h, w)
    for n in range(max_tiles, 0, -1):
        seg = long_ / n
        a, b = seg, float(short)  # tile extent along long / short axis
        if a > MAX_ASPECT * b:
            a = MAX_ASPECT * b
        if b > MAX_ASPECT * a:
            b = MAX_ASPECT * a
        if n > 1 and min(a, b) < MIN_TILE_SHORT:
            continue
        boxes = []
        for k in range(n):
            c_long = seg * (k + 0.5)
            c_short = short / 2
            l0, s0 = round(c_long - a / 2), round(c_short - b / 2)
            l1, s1 = l0 + round(a), s0 + round(b)
            boxes.append((l0, s0, l1, s1) if landscape else (s0, l0, s1, l1))
        return boxes
    raise AssertionError("unreachable")


def resize_short(im: Image.Image, short: int = SHORT) -> Image.Image:
    w, h = im.size
    s = short / min(w, h)
    return im.resize((max(short, round(w * s)), max(short, round(h * s))), Image.LANCZOS)


def flatness(im: Image.Image) -> tuple[float, float]:
    g = np.asarray(im.convert("L"), dtype=np.float32)
    grad = np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()
    return float(g.std()), float(grad)


def emit(rows, out, name, im, src, path, author, licence, changes):
    im = resize_short(im.convert("RGB"))
    std, grad = flatness(im)
    if std < 12 or grad < 1.2:
        print(f"drop flat {name}: std {std:.1f} grad {grad:.2f}")
        return
    im.save(os.path.join(out, name), quality=85, optimize=True)
    rows.append(dict(file=name, source=src, path=path, author=author, licence=licence,
                     changes=changes + f"; resized to {im.size[0]}x{im.size[1]}, JPEG q85"))


# Wallpapers cut into two halves (each ~square for 16:9) because the halves show different things
# (judged on a contact sheet); every other image is one centre crop of at most 3:2.
TWO_TILES = {"wall_lomiri_aitzgorri", "wall_lomiri_dragonfly", "wall_lomiri_life", "wall_lomiri_picosdeeuropa",
             "wall_lomiri_picture_1a", "wall_lomiri_seeding", "wall_lomiri_wine", "wall_mate_elephants",
             "wall_mate_ladybird", "wall_mate_yellowflower", "wall_plasma_altai", "wall_plasma_colorfulcups",
             "wall_plasma_eveningglow", "wall_plasma_fallenleaf", "wall_plasma_path", "wall_plasma_safelanding"}
DROP = {"wall_mate_wood", "wall_plasma_pastelhills"}  # nearly flat: nothing for a style network to learn


def crop_and_emit(rows, out, prefix, im, src, path, author, licence, extra=""):
    if prefix in DROP:
        return
    im = im.convert("RGB")
    boxes = tiles(*im.size, 2 if prefix in TWO_TILES else 1)
    for k, box in enumerate(boxes):
        tag = f"_{k}" if len(boxes) > 1 else ""
        what = (f"tile {k + 1}/{len(boxes)} (box {box} of {im.size[0]}x{im.size[1]})" if len(boxes) > 1
                else f"centre crop {box} of {im.size[0]}x{im.size[1]}")
        emit(rows, out, f"{prefix}{tag}.jpg", im.crop(box), src, path, author, licence, extra + what)


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


LOMIRI_16 = {  # file: (author, licence) as in lomiri-wallpapers-16.04's copyright ("16.04/<file>")
    "Bridge_by_Sander_Klootwijk.jpg": ("Sander Klootwijk, 2018", "CC-BY-SA-4.0"),
    "Dragonfly_by_Bolly.jpg": ('"Bolly", 2018', "CC-BY-SA-4.0"),
    "Picture_0B_by_freespace.jpg": ('Trevor "Freespace", 2018', "CC-BY-4.0"),
    "Picture_1A_by_freespace.jpg": ('Trevor "Freespace", 2018', "CC-BY-4.0"),
    "Wine_by_Jakkub_Mede.jpg": ("Jakub Mede, 2018", "CC-BY-4.0"),
    "aitzgorri_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi, 2018", "CC-BY-4.0"),
    "free_by_Peter_Nerlich.jpg": ("Peter Nerlich, 2018", "CC-BY-SA-4.0"),
    "friends_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi, 2018", "CC-BY-4.0"),
    "greentock_by_Peter_Nerlich.jpg": ("Peter Nerlich, 2018", "CC-BY-SA-4.0"),
    "life_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi, 2018", "CC-BY-4.0"),
    "picosdeeuropa_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi, 2018", "CC-BY-4.0"),
    "seeding_by_Clements_Engelhardt.jpg": ("Clemens Engelhardt, 2018", "CC0-1.0"),
    "sunset_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi, 2018", "CC-BY-4.0"),
}
LOMIRI_20 = {
    "Infinite-Sea_by_Aury88.jpg": ("2019, Aury88", "CC-BY-SA-3.0"),
    "Kleiber_by_Lukas_Baubkus.jpg": ("2021, Lukas Baubkus", "CC-BY-SA-3.0"),
}
MATE = {  # path under usr/share/backgrounds/mate: author per mate-backgrounds' copyright, all GPL-2+
    "nature/Aqua.jpg": "2008, Charles Barbin",
    "nature/LadyBird.jpg": "2008, Charles Barbin",
    "nature/YellowFlower.jpg": "2008, Charles Barbin",
    "nature/Garden.jpg": "2008, Charles Barbin",
    "nature/Blinds.jpg": "2008, Lennart Poettering; 2008, Andrea Cimitan",
    "nature/Dune.jpg": "2007, Marco Cogoni; 2008, Hylke Bons",
    "nature/FreshFlower.jpg": "2005, Jens Ansorg",
    "nature/GreenMeadow.jpg": "2005, Timothy Schellhase; 2008, Lapo Calamandrei",
    "nature/RainDrops.jpg": '2008, "blackcombwhistler07"',
    "nature/Storm.jpg": "2008, Sergey Nazarov",
    "nature/TwoWings.jpg": "2008, Charles Barbin; 2008, Hylke Bons",
    "nature/Wood.jpg": "2008, Jean-François Fortin Tam",
    "abstract/Elephants_5640x3172.jpg": "2020, Wyng Stancikaite",
}
UKUI = ["2004default.jpg", "rhythm.jpg"]  # 3D-rendered ribbons; the rest of ukui is flat vector art
PLASMA = ["Altai", "Autumn", "BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow", "FallenLeaf",
          "Grey", "MilkyWay", "OneStandsOut", "PastelHills", "Path", "SafeLanding", "Volna", "summer_1am"]
GCOMPRIS_SKIP = re.compile(
    r"/lang/|/babyshapes/|Gogh|Eglise_dAuvers|PereTanguy|volleyball|spray|"
    r"solar_system/resource/(mercury|neptune|sun|uranus|venus|mars)|TowerBridgeLondon")


def plasma_meta(d):
    for m in ("metadata.json", "metadata.desktop"):
        p = os.path.join(d, m)
        if os.path.exists(p):
            t = open(p).read()
            if m.endswith(".json"):
                k = json.loads(t)["KPlugin"]
                return ", ".join(a["Name"] for a in k.get("Authors", [])), k.get("License")
            return (re.search(r"X-KDE-PluginInfo-Author=(.*)", t)[1],
                    re.search(r"X-KDE-PluginInfo-License=(.*)", t)[1])


def largest_variant(folder):
    def px(p):
        m = re.match(r"(\d+)x(\d+)", os.path.basename(p))
        return int(m[1]) * int(m[2]) if m else 0
    return max(glob.glob(os.path.join(folder, "*")), key=px)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wp", default="/tmp/wp")
    ap.add_argument("--gc", default="/tmp/gc/x/gcompris")
    ap.add_argument("--gc-licences", default="/tmp/gc/ok.json")
    ap.add_argument("--out", default="data/content")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    wp = a.wp
    for f, (who, lic) in LOMIRI_16.items():
        p = glob.glob(f"{wp}/lomiri-wallpapers-16.04*/usr/share/backgrounds/{f}")[0]
        crop_and_emit(rows, a.out, f"wall_lomiri_{slug(f.split('_by_')[0])}", Image.open(p),
                      "lomiri-wallpapers-16.04 20.04.0-2", "/usr/share/backgrounds/" + f, who, lic)
    for f, (who, lic) in LOMIRI_20.items():
        p = glob.glob(f"{wp}/lomiri-wallpapers-20.04*/usr/share/backgrounds/{f}")[0]
        crop_and_emit(rows, a.out, f"wall_lomiri_{slug(f.split('_by_')[0])}", Image.open(p),
                      "lomiri-wallpapers-20.04 20.04.0-2", "/usr/share/backgrounds/" + f, who, lic)
    for f, who in MATE.items():
        p = glob.glob(f"{wp}/mate-backgrounds*/usr/share/backgrounds/mate/{f}")[0]
        crop_and_emit(rows, a.out, f"wall_mate_{slug(os.path.splitext(os.path.basename(f))[0].split('_')[0])}",
                      Image.open(p), "mate-backgrounds 1.26.0-1", "/usr/share/backgrounds/mate/" + f, who, "GPL-2+")
    for f in UKUI:
        p = glob.glob(f"{wp}/ukui-wallpapers*/usr/share/backgrounds/{f}")[0]
        crop_and_emit(rows, a.out, f"wall_ukui_{slug(f[:-4])}", Image.open(p), "ukui-wallpapers 20.04.3-1.1",
                      "/usr/share/backgrounds/" + f, "2013-2020 Ubuntu Kylin community contributors", "CC-BY-SA-3.0")
    for name in PLASMA:
        d = glob.glob(f"{wp}/plasma-workspace-wallpapers*/usr/share/wallpapers/{name}")[0]
        who, lic = plasma_meta(d)
        p = largest_variant(os.path.join(d, "contents/images"))
        crop_and_emit(rows, a.out, f"wall_plasma_{slug(name)}", Image.open(p), "plasma-workspace-wallpapers 4:5.27.5-2",
                      "/usr" + p.split("/usr", 1)[1],
                      f"{who} (wallpaper metadata); package copyright: 2014 KDE Visual Design Group, GPL-2+", lic)
    p = glob.glob(f"{wp}/gnome-backgrounds*/usr/share/backgrounds/gnome/adwaita-l.webp")[0]
    crop_and_emit(rows, a.out, "wall_gnome_adwaita_l", Image.open(p), "gnome-backgrounds 43.1-1",
                  "/usr/share/backgrounds/gnome/adwaita-l.webp", "2011 Jakub Steiner", "CC-BY-SA-3.0")
    for o in json.load(open(a.gc_licences)):
        if GCOMPRIS_SKIP.search(o["path"]):
            continue
        act = o["path"].split("/")[2]
        stem = os.path.splitext(os.path.basename(o["path"]))[0].replace("_background", "")
        who = o["who"] + (f"; source {o['src']}" if o["src"] else "")
        crop_and_emit(rows, a.out, f"gcompris_{slug(act)}_{slug(stem)}", Image.open(os.path.join(a.gc, o["path"])),
                      "gcompris-qt-data 3.1-2", f"/usr/share/gcompris-qt/rcc/{act}.rcc : {o['path']}",
                      who, o["lic"], f"licence from {o['via']}; ")
    import skimage.data as skd
    sk = {  # name: (author/licence text from skimage.data's docstrings, licence)
        "chelsea": ("Stefan van der Walt (photographer)", "CC0"),
        "coffee": ("Rachel Michetti (photographer), courtesy of Pikolo Espresso Bar", "CC0"),
        "rocket": ("SpaceX (DSCOVR launch photo)", "public domain (released by SpaceX)"),
        "hubble_deep_field": ("NASA (Hubble eXtreme Deep Field)", "public domain (NASA)"),
        "immunohistochemistry": ("Center for Microscopy And Molecular Imaging (CMMI)", "no known copyright restrictions"),
        "retina": ("Mikael Häggström (Wikimedia Commons)", "CC0-1.0"),
        "camera": ("Lav Varshney (photographer)", "CC0"),
        "brick": ("CC0Textures Bricks25", "CC0"),
    }
    for n, (who, lic) in sk.items():
        arr = getattr(skd, n)()
        im = Image.fromarray(arr)
        crop_and_emit(rows, a.out, f"skimage_{n}", im, f"scikit-image 0.26.0 skimage.data.{n}()",
                      f"skimage/data/ ({n})", who, lic, "greyscale copied to RGB; " if arr.ndim == 2 else "")
    write_sources(rows, os.path.join(a.out, "SOURCES.md"))
    hold = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "data", "photo_holdout_tower_bridge.jpg")
    im = Image.open(os.path.join(a.gc, HOLDOUT)).convert("RGB")
    im.thumbnail((768, 768), Image.LANCZOS)
    im.save(hold, quality=90)
    print(len(rows), "files")


HOLDOUT = "src/activities/details/resource/image/TowerBridgeLondon_background.webp"
PHOTO_HEADER = """# Content images (training data for fast style networks and the AdaIN decoder)

Every file here is an RGB JPEG (quality 85) whose shorter side is 320 px (longer side at most 480 px,
aspect at most 3:2). Photographs were made by `tools/collect_content_photos.py` from Debian bookworm
packages (`apt-get download`, then `dpkg-deb -x`) and from scikit-image's bundled data; renders by
`tools/render_training_scenes.py`. Author and licence are copied from the package's
`/usr/share/doc/<package>/copyright` file, or, where that file names no author for the image, from the
package's own per-image metadata (KDE wallpaper `metadata.json`, gcompris' per-folder `README` inside its
`.rcc` resource bundle), as stated in the "licence" and "changes" columns. Files whose licence was
unclear or non-free were not taken. CC-BY/CC-BY-SA files are adaptations (crops, resizes) under the same
licence; attribute the author given here. Held out of this folder (bench only): gcompris'
`TowerBridgeLondon_background` (see benchmarks/data/SOURCES.md) and scikit-image's `astronaut`.

## Photographs

| file | source package | original path | author / copyright | licence | changes |
|---|---|---|---|---|---|
"""


def write_sources(rows, path):
    def cell(s):
        return str(s).replace("|", "\\|").replace("\n", " ")
    lines = [PHOTO_HEADER]
    for r in rows:
        lines.append("| " + " | ".join(cell(r[k]) for k in ("file", "source", "path", "author", "licence", "changes")) + " |\n")
    renders = ""
    if os.path.exists(path):  # keep the renders section that tools/render_training_scenes.py wrote
        old = open(path).read()
        if "\n## Renders" in old:
            renders = old[old.index("\n## Renders"):]
    open(path, "w").write("".join(lines) + renders)


if __name__ == "__main__":
    main()
