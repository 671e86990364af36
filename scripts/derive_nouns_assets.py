"""Re-derive src/condiff/data/nouns_assets.json from the CC0 Nouns artwork.

The artwork ships in the npm package `@nouns/assets` as `dist/image-data.json`. We keep its
run-length encoding (it is already compact) and drop everything else:

    python scripts/derive_nouns_assets.py                          # npm pack @nouns/assets@0.10.0
    python scripts/derive_nouns_assets.py --image-data image-data.json

Only the artwork data is shipped, never the package's (GPL-3.0) code; the artwork is CC0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

NPM_PACKAGE = "@nouns/assets@0.10.0"
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "condiff" / "data" / "nouns_assets.json"

# image-data.json group -> (our part kind, the filename prefix to strip)
PART_GROUPS = {
    "bodies": ("body", "body-"),
    "accessories": ("accessory", "accessory-"),
    "heads": ("head", "head-"),
    "glasses": ("glasses", "glasses-"),
}
# The two Nouns backgrounds are unnamed in the source; these are the names the Nouns community uses.
BACKGROUND_NAMES = {"d5d7e1": "cool", "e1d7d5": "warm"}

FORMAT = (
    "rle is hex bytes: top, right, bottom, left, then (run length, palette index) pairs. "
    "Runs fill a 32x32 canvas row by row from column left to right (exclusive), starting at row top "
    "and wrapping at right; bottom is inclusive, so the runs cover (right-left)*(bottom-top+1) pixels. "
    "Palette index 0 is transparent. An empty rle is an empty part."
)


def fetch_image_data(workdir: Path) -> Path:
    """Download the npm tarball with `npm pack` and extract dist/image-data.json from it."""
    subprocess.run(["npm", "pack", NPM_PACKAGE], cwd=workdir, check=True, capture_output=True)
    (tarball,) = workdir.glob("*.tgz")
    with tarfile.open(tarball) as tar:
        member = tar.getmember("package/dist/image-data.json")
        target = workdir / "image-data.json"
        target.write_bytes(tar.extractfile(member).read())
    return target


def derive_rle(filename: str, data: str) -> str:
    """The source hex without its `0x` and palette-set byte, after checking the run lengths add up."""
    raw = bytes.fromhex(data.removeprefix("0x"))
    if raw[0] != 0:
        raise ValueError(f"{filename}: palette set {raw[0]}, but the source has only palette 0")
    top, right, bottom, left = raw[1:5]
    runs = raw[5:]
    covered = sum(runs[0::2])
    expected = (right - left) * (bottom - top + 1) if runs else 0
    if len(runs) % 2 or covered != expected:
        raise ValueError(f"{filename}: runs cover {covered} pixels, bounds {top, right, bottom, left}")
    return "" if not runs else raw[1:].hex()


def derive_assets(image_data: dict) -> dict:
    backgrounds = [{"name": BACKGROUND_NAMES[color], "color": color} for color in image_data["bgcolors"]]
    parts = {}
    for group, (kind, prefix) in PART_GROUPS.items():
        # A few accessories are named "body-..." in the source; we keep those names as they are.
        parts[kind] = []
        for image in image_data["images"][group]:
            name = image["filename"].removeprefix(prefix)
            parts[kind].append({"name": name, "rle": derive_rle(image["filename"], image["data"])})
        names = [part["name"] for part in parts[kind]]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate {kind} names after stripping {prefix!r}")
    return {
        "source": f"npm {NPM_PACKAGE}, dist/image-data.json (Nouns DAO, https://nouns.wtf), CC0",
        "format": FORMAT,
        "palette": image_data["palette"],
        "backgrounds": backgrounds,
        "parts": parts,
    }


def write_compact(assets: dict, path: Path) -> None:
    """JSON with one part per line: small, yet a re-derivation shows up as a readable diff."""
    lines = ["{"]
    for key in ("source", "format", "palette", "backgrounds"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(assets[key])},")
    lines.append('  "parts": {')
    kinds = list(assets["parts"])
    for kind in kinds:
        lines.append(f"    {json.dumps(kind)}: [")
        entries = [f"      {json.dumps(part)}" for part in assets["parts"][kind]]
        lines.append(",\n".join(entries))
        lines.append("    ]" + ("," if kind != kinds[-1] else ""))
    lines.append("  }")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image-data", type=Path, help="a local image-data.json instead of npm pack")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.image_data or fetch_image_data(Path(tmp))
        image_data = json.loads(source.read_text())
    assets = derive_assets(image_data)
    write_compact(assets, OUTPUT)
    counts = ", ".join(f"{len(parts)} {kind}" for kind, parts in assets["parts"].items())
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1024:.0f} KiB): {counts}")


if __name__ == "__main__":
    main()
