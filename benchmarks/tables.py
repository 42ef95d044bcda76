"""The README tables, rendered from benchmarks/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path

from common import RESULTS


def markdown_tables(results: Path = RESULTS) -> str:
    """The README's Performance tables, from the JSON files in `results` (default benchmarks/results/)."""

    def load(*names: str) -> dict | None:
        for name in names:  # the first that exists: a --full memory run is preferred to a --quick one
            path = results / f"{name}.json"
            if path.exists():
                return json.loads(path.read_text())
        return None

    lines = []
    cpu = load("cpu_vs_clap")
    if cpu:
        env = cpu["environment"]
        lines += [
            f"**CPU, {cpu['clip_seconds']:g} s clip, {cpu['n_labels']} labels, {cpu['threads']} threads** "
            f"({env['cpu']}, {env['cpu_count']} cores, torch {env['torch']}; load average "
            f"{cpu['load_average_before'][0]} before, {cpu['load_average_after'][0]} after, this run included; "
            "fastest of "
            f"{len(cpu['peers']['meralign_fp32']['new_labels']['runs_s'])}+ runs)",
            "",
            "| pipeline | audio analysed | new labels | repeated (labels cached) | wall time vs CLAP "
            "(new / repeated) | per analysed audio-second (new / repeated) | vs CLAP per audio-second |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, label in (
            ("clap", "CLAP (transformers zero-shot-audio-classification)"),
            ("meralign_fp32", "meralign, float32 (default)"),
            ("meralign_int8", "meralign, `quantize_for_cpu()` int8"),
        ):
            peer = cpu["peers"][name]
            new, rep = peer["new_labels"], peer["repeated"]

            def ratio(key: str) -> str:
                if name == "clap":
                    return "1"
                return " / ".join(
                    f"{cpu['ratios'][f'{name}/{case}'][key]:.2f}x" for case in ("new_labels", "repeated")
                )

            lines.append(
                f"| {label} | {peer['analysed_audio_seconds']:g} s | {new['min_s']:.2f} s | {rep['min_s']:.2f} s | "
                f"{ratio('wall_time_ratio_vs_clap')} | {new['per_analysed_audio_second_s']:.3f} / "
                f"{rep['per_analysed_audio_second_s']:.3f} s | {ratio('per_analysed_audio_second_ratio_vs_clap')} |"
            )
        gflop = cpu.get("audio_gflop")
        if gflop:
            lines += [
                "",
                f"Audio-side compute per 10 s window: CLAP {gflop['clap_gflop_per_10s']:g} GFLOP, "
                f"meralign (MERT-95M-shaped) {gflop['meralign_gflop_per_10s']:g} GFLOP "
                f"({gflop['meralign_over_clap']:g}x).",
            ]
        acc = cpu["int8_accuracy"]
        lines += [
            "",
            f"int8 vs float32 audio embedding cosine on {acc['clips']} synthetic music clips: "
            f"min {acc['embedding_cosine_min']:.4f} (pooled layers: min {acc['pooled_layer_cosine_min']:.4f}).",
            "",
            "| audio tower, 3 x 10 s segments | time | per audio-second | vs stock |",
            "|---|---|---|---|",
        ]
        for name, entry in cpu["levers"].items():
            if not name.startswith("_"):
                lines.append(
                    f"| {name} | {entry['min_s']:.2f} s | {entry['per_audio_second_s']:.3f} s | "
                    f"{entry['speedup_vs_stock']:.2f}x |"
                )
    mem = load("long_file_memory", "long_file_memory_quick")
    if mem:
        lines += [
            "",
            f"**Peak RSS, classifying one long file** ({mem['mode']} run; load average "
            f"{mem['load_average_before'][0]} before)",
            "",
            "| case | minutes | peak RSS | RSS after loading | time |",
            "|---|---|---|---|---|",
        ]
        for case in mem["cases"]:
            extra = " (" + ", ".join(f"{k}={v}" for k, v in case["env"].items()) + ")" if case.get("env") else ""
            lines.append(
                f"| {case['system']}{extra} | {case['minutes']:g} | {case['peak_rss_mb']:.0f} MB | "
                f"{case['baseline_rss_mb']:.0f} MB | {case['seconds']:.1f} s |"
            )
    gpu = load("gpu_extraction")
    if gpu:
        if gpu.get("skipped"):
            lines += ["", f"**GPU feature extraction**: not measured ({gpu['reason']})."]
        else:
            lines += [
                "",
                f"**GPU feature extraction, 10 s clips** ({gpu['device']}, "
                f"{gpu['gflop_per_segment']} GFLOP per segment, measured bf16 matmul peak "
                f"{gpu['measured_bf16_matmul_peak_tflops']} TFLOP/s)",
                "",
                "| variant | batch | segments/s | GPU busy | model FLOP utilisation | peak memory |",
                "|---|---|---|---|---|---|",
            ]
            for name, value in gpu["variants"].items():
                entries = value.items() if "segments_per_s" not in value and "error" not in value else [("", value)]
                for sub, entry in entries:
                    title = f"{name} {sub}".strip()
                    if "error" in entry:
                        lines.append(f"| {title} | | failed: {entry['error'][:80]} | | | |")
                        continue
                    lines.append(
                        f"| {title} | {entry.get('batch_size', '')} | {entry.get('segments_per_s')} | "
                        f"{entry.get('gpu_busy_percent')}% | {entry.get('model_flop_utilisation')} | "
                        f"{entry.get('peak_memory_gb', '')} GB |"
                    )
    training = load("head_training")
    if training:
        lines += [
            "",
            "**Head training on cached features** (Trainer.train_epoch, MLP head, 2 datasets x 256 per step)",
            "",
            "| device | segments/s |",
            "|---|---|",
        ]
        for device, entry in training["devices"].items():
            lines.append(f"| {device} | {entry['segments_per_s']:.0f} |")
    return "\n".join(lines)
