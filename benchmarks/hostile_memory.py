"""Memory of hostile images, in one run: peak RSS of decoding and preprocessing one image (an ordinary photo vs
1 x 100,000 and 1 x 1,000,000 PNGs), bounded path vs the whole-image reference path, and what a server keeps after
four concurrent 49-MP uploads (JPEG and PNG).

Each image is measured in a fresh child process (peak RSS, VmHWM, reset after the imports, minus the RSS then; Linux
only), under an address-space cap (--cap-mb) so that the reference path's blow-up is reported as a
MemoryError instead of taking the machine down. The server part starts `pixquery serve`'s app on a small `mini`
index in a child process and reads its VmRSS / VmHWM from /proc (Linux only).

    python benchmarks/hostile_memory.py [--photo FILE] [--cap-mb 3000] [--skip-server]

--photo: an ordinary photo to compare with (default: a generated 4000 x 3000 JPEG). Last output line: one JSON
object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys
cap = int(sys.argv[4]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from PIL import Image
from pixquery.media.decode import open_image
from pixquery.models.conse import preprocess_image
from pixquery.models.preprocess import ImagePreprocessor, PreprocessConfig
path, mode, path_kind = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = PreprocessConfig(size=224, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode=mode if mode != "conse" else "shortest")
ours = ImagePreprocessor(cfg)

def reference(img):
    # The whole-image path every reference pipeline takes (what pixquery did before): resize, then crop or pad.
    w, h = img.size
    if mode == "squash":
        return img.resize((224, 224), ours._resample)
    if mode == "longest":
        s = 224 / max(w, h)
        return img.resize((max(1, round(w * s)), max(1, round(h * s))), ours._resample)
    long_side = int(224 * max(w, h) / min(w, h))
    return img.resize((224, long_side) if w <= h else (long_side, 224), ours._resample)

def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

# The imports' own high-water mark is forgotten (Linux resets VmHWM on "5" > clear_refs): what follows is measured.
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
base = status_kb("VmRSS")
status = "ok"
try:
    image = open_image(path, target_size=224)
    if path_kind == "reference":
        reference(image)
    elif mode == "conse":
        preprocess_image(image, 224)
    else:
        ours(image)
except MemoryError:
    status = "MemoryError"
peak = status_kb("VmHWM")
print(json.dumps({"peak_mb": round((peak - base) / 1024, 1), "status": status}))
"""


def make_inputs(folder: Path, photo: Path | None) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    inputs: dict[str, Path] = {}
    if photo is None:
        x = np.linspace(0, 255, 4000, dtype=np.float32)
        y = np.linspace(0, 255, 3000, dtype=np.float32)
        pixels = np.stack([np.add.outer(y, x) / 2, np.add.outer(y, -x) / 2 + 128, np.outer(y, np.ones(4000))], 2)
        photo = folder / "photo-12mp.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(photo, quality=90)
    inputs["ordinary photo"] = photo
    png = folder / "photo-3mp.png"  # PNG has no reduced-scale decoding: every pixel is decoded
    Image.open(photo).convert("RGB").resize((2000, 1500)).save(png)
    inputs["3-MP PNG photo"] = png
    for name, size in (("1x100,000 PNG", (1, 100_000)), ("1x1,000,000 PNG", (1, 1_000_000))):
        inputs[name] = folder / f"{name.replace(',', '').replace(' ', '-')}.png"
        Image.new("L", size, 128).save(inputs[name])
    return inputs


def measure(path: Path, mode: str, kind: str, cap_mb: int) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, kind, str(cap_mb)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    if done.returncode != 0:
        return {"peak_mb": None, "status": f"crashed ({done.returncode}): {done.stderr.strip()[-200:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def preprocessing(inputs: dict[str, Path], cap_mb: int) -> dict[str, object]:
    figures: dict[str, object] = {}
    for mode in ("shortest", "squash", "longest", "conse"):
        baseline = measure(inputs["ordinary photo"], mode, "bounded", cap_mb)["peak_mb"] or 1.0
        for name, path in inputs.items():
            for kind in ("bounded",) if mode == "conse" else ("bounded", "reference"):
                result = measure(path, mode, kind, cap_mb)
                ratio = (result["peak_mb"] / baseline) if result["peak_mb"] is not None and baseline else None
                key = f"{mode} {kind} {name}"
                figures[key] = {**result, "vs_photo": None if ratio is None else round(ratio, 2)}
                print(f"{key:45s} peak {result['peak_mb']!s:>8} MB  {result['status']:12s}"
                      f"  x{figures[key]['vs_photo']} of the ordinary photo's")
    return figures


def _rss(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


SERVE = r"""
import sys, time
from pixquery.server.app import create_app
from pixquery.server.limits import Limits
from pixquery.server.run import BackgroundServer
if __name__ == "__main__":
    limits = Limits(search_rate=1e4, search_burst=10_000, media_rate=1e4, media_burst=10_000)
    with BackgroundServer(create_app(sys.argv[1], limits=limits, warm_thumbs=0)) as server:
        print(server.url, flush=True)
        time.sleep(600)
"""


def uploads(folder: Path) -> dict[str, object]:
    import httpx
    import numpy as np
    from PIL import Image

    from pixquery.api import Library

    gallery = folder / "gallery"
    gallery.mkdir()
    for colour in ("red", "green", "blue", "yellow"):
        Image.new("RGB", (64, 48), colour).save(gallery / f"{colour}.png")
    with Library.open(folder / "index", model="mini") as lib:
        lib.index([gallery], workers=1)
    (folder / "serve.py").write_text(SERVE)
    x = np.linspace(0, 255, 7000, dtype=np.float32)
    big = Image.fromarray(np.stack([np.add.outer(x, x) / 2, np.add.outer(x, -x) / 2 + 128,
                                    np.outer(x, np.ones(7000))], 2).astype(np.uint8))
    figures: dict[str, object] = {}
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        big.save(buffer, fmt, **({"quality": 80} if fmt == "JPEG" else {"compress_level": 1}))
        data = buffer.getvalue()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        server = subprocess.Popen([sys.executable, str(folder / "serve.py"), str(folder / "index")], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = server.stdout.readline().strip()
            with httpx.Client(base_url=url, timeout=600) as client:
                client.get("/api/search", params={"q": "red"})
                idle, _ = _rss(server.pid)
                statuses: list[int] = []

                def upload(client: httpx.Client = client, data: bytes = data, fmt: str = fmt,
                           statuses: list[int] = statuses) -> None:
                    files = {"image": (f"big.{fmt.lower()}", data, f"image/{fmt.lower()}")}
                    statuses.append(client.post("/api/search", files=files).status_code)

                for _ in range(2):  # two rounds of four at once
                    threads = [threading.Thread(target=upload) for _ in range(4)]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                time.sleep(3)
                after, peak = _rss(server.pid)
        finally:
            server.terminate()
            server.wait()
        figures[f"49MP {fmt} x4"] = {"upload_mb": round(len(data) / 1e6, 1), "statuses": sorted(set(statuses)),
                                     "idle_mb": round(idle), "peak_mb": round(peak), "after_mb": round(after),
                                     "kept_mb": round(after - idle), "kept_vs_idle": round(after / idle, 2)}
        print(f"server, 4 concurrent 49-MP {fmt} uploads x2: idle {idle:.0f} MB, peak {peak:.0f} MB, "
              f"after {after:.0f} MB (kept {after - idle:.0f} MB, x{after / idle:.2f} of idle)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, help="an ordinary photo to compare with")
    parser.add_argument("--cap-mb", type=int, default=3000, help="address-space cap of each child (MB)")
    parser.add_argument("--skip-server", action="store_true", help="only the preprocessing part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        figures = {"preprocessing": preprocessing(make_inputs(folder, args.photo), args.cap_mb)}
        if not args.skip_server and sys.platform.startswith("linux"):
            figures["server_uploads"] = uploads(folder)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
