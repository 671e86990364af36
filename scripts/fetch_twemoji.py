"""Fetch Twemoji, a real image set no one in this project made, as a user's own folder of images.

Twemoji's 64 px PNGs (about 3,700 RGBA emoji) come from the npm package `emoji-datasource-twitter` 16.0.0,
`package/img/twitter/64/*.png`. The artwork is Twitter's Twemoji, CC-BY 4.0
(https://creativecommons.org/licenses/by/4.0/): credit "Twemoji by Twitter, Inc and other contributors"
wherever you show images or models made from it. Nothing of it is shipped with condiff.

    python scripts/fetch_twemoji.py                    # into data/twemoji (cached: a second run does nothing)
    python scripts/fetch_twemoji.py --out ~/twemoji --tarball emoji-datasource-twitter-16.0.0.tgz

The split is the own-data recipes' `data.held_out_every: 10`: sorted by file name, the 1st, 11th, 21st, ...
image is held out, never trained on. The files are copied as they are (transparency included): condiff
composites alpha on `data.background` as it reads them.
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

NPM_PACKAGE = "emoji-datasource-twitter@16.0.0"
MEMBERS = "package/img/twitter/64/"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "twemoji"
CREDIT = ("Twemoji by Twitter, Inc and other contributors, CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/), "
          f"from the npm package {NPM_PACKAGE}, {MEMBERS}*.png\n")


def packed_tarball(folder: Path) -> Path:
    """`npm pack` the package into `folder` (needs npm and the registry)."""
    done = subprocess.run(["npm", "pack", NPM_PACKAGE, "--pack-destination", str(folder)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"npm pack {NPM_PACKAGE} failed: {done.stderr.strip().splitlines()[-1:]}; download the "
                         "tarball yourself and pass --tarball")
    return next(folder.glob("*.tgz"))


def extract_pngs(tarball: Path, out: Path) -> int:
    """The package's 64 px PNGs into `out` (flat, by their own names); returns how many."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            name = member.name
            inside = name.startswith(MEMBERS) and "/" not in name[len(MEMBERS):]  # not in a subfolder
            if not (member.isfile() and inside and name.endswith(".png")):
                continue
            source = archive.extractfile(member)
            if source is not None:
                (out / Path(name).name).write_bytes(source.read())
                count += 1
    (out / "CREDIT.txt").write_text(CREDIT, encoding="utf-8")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the PNGs go (default: {DEFAULT_OUT})")
    parser.add_argument("--tarball", type=Path, help="an already downloaded emoji-datasource-twitter-16.0.0.tgz")
    args = parser.parse_args()
    if (args.out / "CREDIT.txt").is_file():
        print(f"{args.out}: already fetched ({len(list(args.out.glob('*.png')))} images)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or packed_tarball(Path(tmp))
        count = extract_pngs(tarball, args.out)
    print(f"{args.out}: {count} Twemoji PNGs (CC-BY 4.0, see CREDIT.txt); hold out every 10th with "
          "data.held_out_every: 10")


if __name__ == "__main__":
    main()
