"""`avs predict` on a 10 s 720p video at 1 and 5 frames per second, against the model alone.

Writes a 10 s 1280x720 mp4 (25 fps, moving discs and two tones), then times, for each --fps:
  predict   `predict_video`: decode at that rate, Segmenter per window, JSON answer, overlay mp4 with audio
  baseline  decode at that rate and Segmenter.predict over the same windows: the model and its
            preprocessing alone, what any way of running it pays
and prints the seconds of each (best of --repeats), predict / baseline and where predict's time goes.
The model is --model (default: the pipeline's models/ folder; random tiny weights at 64 px when absent:
the time does not depend on the weights).
Usage: python benchmarks/predict_video.py [--model models] [--fps 1 5] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import torch

from components.infer import open_segmenter
from components.media import decode_video
from components.predict_video import WINDOW_SECONDS, frame_windows, predict_video

_spec = importlib.util.spec_from_file_location("serve_bench", Path(__file__).with_name("serve.py"))
serve_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve_bench)


def baseline(segmenter, video: Path, fps: float) -> None:
    """Decode at `fps` and run the model over the same windows `predict_video` uses; nothing written."""
    media = decode_video(video, max_seconds=None, rate=fps)
    for span in frame_windows(media.frames.shape[0], max(1, round(WINDOW_SECONDS * fps))):
        segmenter.predict(media.frames[span.start: span.stop], media.waveform, media.sample_rate,
                          times=[k / fps for k in span])


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models"))
    parser.add_argument("--fps", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "video.mp4"
        video.write_bytes(serve_bench.make_clip(seconds=10, size=720, width=1280, fps=25))
        model = args.model
        if not (model / "stage1" / "best.pt").is_file():
            model = tmp / "models"
            model.mkdir()
            stage1, stage2 = serve_bench.tiny_checkpoints(model, 64)
            stage1.rename(model / "stage1.pt")
            stage2.rename(model / "stage2.pt")
        segmenter = open_segmenter(model)
        segmenter.warmup(2, (720, 1280))
        print(f"10 s 1280x720 video, model {args.model if model == args.model else 'tiny (random weights)'}, "
              f"{torch.get_num_threads()} threads")
        for fps in args.fps:
            laps: dict[str, float] = {}

            def run_predict(rate: float = fps, laps: dict[str, float] = laps) -> None:
                laps.update(predict_video(segmenter, video, tmp / "out", rate).timings)

            ours = best_of(args.repeats, run_predict)
            base = best_of(args.repeats, lambda rate=fps: baseline(segmenter, video, rate))
            parts = ", ".join(f"{k} {v / 1000:.1f} s" for k, v in laps.items())
            print(f"--fps {fps:g}: predict {ours:.1f} s, baseline {base:.1f} s, predict / baseline "
                  f"{ours / base:.2f} ({parts})")


if __name__ == "__main__":
    main()
