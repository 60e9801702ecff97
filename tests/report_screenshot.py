"""(Re)make the instructor guide's screenshot of the class report,
``autograder/report-screenshot.png``::

    make report-screenshot        (or: .venv/bin/python tests/report_screenshot.py)

The report of the synthetic class (tests/report_class.py) is opened in headless Chromium
(tests/browser.py) and the top of the page captured. The PNG's text chunk keeps a fingerprint of
what made the page (the report package's sources and the synthetic class): tests/test_report.py
fails when it no longer matches, i.e. when the screenshot is stale.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "autograder" / "report-screenshot.png"
FINGERPRINT = "gradschool-report-fingerprint"  # the PNG text chunk's key
SIZE = (1000, 1500)  # the browser window: the header, the scores and the tests table


def fingerprint() -> str:
    """SHA-256 of the report package's sources and the synthetic class."""
    package = ROOT / "src" / "gradschool" / "instructor" / "report"
    digest = hashlib.sha256()
    for path in [*sorted(package.glob("*.py")), ROOT / "tests" / "report_class.py"]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def recorded_fingerprint(png: Path = SCREENSHOT) -> str | None:
    """The fingerprint stored in ``png`` (None if it has none)."""
    with Image.open(png) as image:
        return image.text.get(FINGERPRINT)


def main() -> int:
    from browser import chromium, missing
    from report_class import write_class

    from gradschool.instructor.report import write_report

    if missing():
        print(missing(), file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        html, _ = write_report(write_class(Path(tmp)))
        with chromium(*SIZE) as driver:
            driver.get(html.as_uri())
            png = driver.get_screenshot_as_png()
    info = PngInfo()
    info.add_text(FINGERPRINT, fingerprint())
    with Image.open(io.BytesIO(png)) as shot:  # 256 colours: a third of the size, same look
        shot.convert("RGB").quantize(256).save(SCREENSHOT, pnginfo=info, optimize=True)
    print(f"wrote {SCREENSHOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
