"""Inference speed with and without feature taps: images/s on the same images in the same run.

    python benchmarks/detector_bench.py [--checkpoint PATH] [--images 32] [--r50-images 4] [--device cpu|cuda]

Small preset at 320x240 (a trained checkpoint if given, else random weights with a low score threshold so that
the post-processing handles a realistic number of boxes), and ResNet-50-FPN at 800 px. Plain and tapped passes
alternate, batch by batch and in turn first, so drift on the machine hits both alike. Writes benchmarks/results/detector.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.checkpoint import load_checkpoint  # noqa: E402
from detectors.model import build_model, preset_config  # noqa: E402
from detectors.synthetic import render_scene  # noqa: E402
from detectors.taps import detect_with_features  # noqa: E402

CLASSES = ["stop_sign", "speed_sign", "car", "bus"]


def scenes(n: int, width: int, height: int) -> list[torch.Tensor]:
    out = []
    for i in range(n):
        image = render_scene(123, "bench", i, width, height)[0]
        out.append(torch.from_numpy(__import__("numpy").array(image)).permute(2, 0, 1).float() / 255)
    return out


def measure(model, images, batch_size: int, rounds: int, device: str) -> dict:
    model.eval().to(device)
    images = [im.to(device) for im in images]
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():  # warm-up
        model(batches[0])
        detect_with_features(model, batches[0])
    def timed(fn, batch):
        sync()
        t0 = time.perf_counter()
        out = fn(batch)
        sync()
        return time.perf_counter() - t0, out

    def plain_pass(batch):
        with torch.inference_mode():
            return model(batch)

    plain = tapped = 0.0
    detections = 0
    for r in range(rounds):
        for b, batch in enumerate(batches):
            # Alternate which pass goes first, so caches and clock drift favour neither.
            if (r + b) % 2 == 0:
                dt_plain, _ = timed(plain_pass, batch)
                dt_tapped, outs = timed(lambda x: detect_with_features(model, x), batch)
            else:
                dt_tapped, outs = timed(lambda x: detect_with_features(model, x), batch)
                dt_plain, _ = timed(plain_pass, batch)
            plain += dt_plain
            tapped += dt_tapped
            detections += sum(len(o.boxes) for o in outs)
            del outs  # full-size masks: keeping them alive into the next pass would tax that pass's allocations
    n = rounds * len(images)
    return {"images": n, "batch_size": batch_size, "plain_images_per_s": round(n / plain, 2),
            "tapped_images_per_s": round(n / tapped, 2), "tap_overhead_pct": round(100 * (tapped / plain - 1), 2),
            "detections_per_image": round(detections / n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="a trained small-preset checkpoint")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--r50-images", type=int, default=4, help="0 to skip ResNet-50-FPN")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "detector.json"))
    args = ap.parse_args()

    torch.manual_seed(0)
    if args.checkpoint:
        small = load_checkpoint(args.checkpoint).model
        weights = f"checkpoint {Path(args.checkpoint).name}"
    else:
        small = build_model(preset_config("small", CLASSES, box_score_thresh=0.01))
        weights = "random (score threshold 0.01)"
    result = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
              "cpu": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d")}
    result["small_320"] = {"weights": weights, "size": "320x240",
                           **measure(small, scenes(args.images, 320, 240), 4, args.rounds, args.device)}
    print(json.dumps(result["small_320"]), flush=True)
    if args.r50_images:
        r50 = build_model(preset_config("r50", CLASSES, box_score_thresh=0.01))
        result["r50_800"] = {"weights": "random (score threshold 0.01)", "size": "1066x800",
                             **measure(r50, scenes(args.r50_images, 1066, 800), 2, args.rounds, args.device)}
        print(json.dumps(result["r50_800"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
