"""Render report pages in headless Chromium into small PNGs for the docs (``make screenshots``).

    python docs/screenshots.py out/demo/digits-cnn/report.html:docs/img/report-run.png ...

Each page is shot in a tall window, the blank space below it is cropped, and the image is
stored with a 256-colour palette so that it stays small. Needs ``chromium`` (``apt-get install
chromium``) and Pillow (installed with matplotlib).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH, HEIGHT = 1100, 6000


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("screenshots: no chromium found (apt-get update && apt-get install -y chromium)")


def shoot(html: Path, png: Path, exe: str) -> None:
    from PIL import Image, ImageChops

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={raw}",
               html.resolve().as_uri()]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        img = Image.open(raw).convert("RGB")
    blank = Image.new("RGB", img.size, (255, 255, 255))
    box = ImageChops.difference(img, blank).getbbox()
    if box:
        img = img.crop((0, 0, WIDTH, min(HEIGHT, box[3] + 24)))
    png.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=256).save(png, optimize=True)
    print(f"{html} -> {png} ({img.size[0]}x{img.size[1]}, {png.stat().st_size // 1024} KB)")


def main(pairs: list[str]) -> int:
    exe = browser()
    for pair in pairs:
        html, _, png = pair.partition(":")
        shoot(Path(html), Path(png), exe)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
