"""The tool commands beside the product: demo, synth, eval, train-mini, export-onnx (ShapesWorld and evaluation
live here, never in a product path)."""

from __future__ import annotations

import argparse
import sys

from pixquery.cli.output import note, print_json


def demo(args: argparse.Namespace) -> None:
    """`pixquery demo`: the offline tour (its output is the result)."""
    from pixquery.demo import run_demo

    if args.n < 50:
        from pixquery.errors import UsageError

        raise UsageError("--n must be at least 50")
    run_demo(args.directory, n=args.n, photos=args.photos, serve=args.serve, mini=args.mini)


def synth(args: argparse.Namespace) -> None:
    """`pixquery synth OUT`: writes the sets; the manifest on stdout."""
    from pixquery.synth.emit import synth_command

    print_json(synth_command(args.out_dir, n=args.n, seed=args.seed, heldout=args.heldout, size=args.size,
                             overwrite=args.overwrite))


def eval(args: argparse.Namespace) -> None:  # noqa: A001 - the command's name
    """`pixquery eval TASK`: the results (Markdown, or JSON) on stdout; the report is written to disk."""
    from pixquery.eval.report import render_markdown
    from pixquery.eval.runner import run_eval

    options = {"split": args.split, "batch_size": args.batch_size, "workers": args.workers,
               "cache": not args.no_cache}
    results = run_eval(args.task, args.data, args.model, args.method or None, args.out, options)
    if args.json_out:
        print_json(results)
        return
    sys.stdout.write(render_markdown(results))
    note(f"report written to {results['files']['json']}")


def train_mini(args: argparse.Namespace) -> None:
    """`pixquery train-mini OUT`: trains; the training log's summary on stdout."""
    from pixquery.synth.train import train_mini_command

    log = train_mini_command(args.out_dir, minutes=args.minutes, seed=args.seed, heldout_spec=args.heldout)
    print_json({k: v for k, v in log.items() if k not in ("loss_curve", "config")})


def export_onnx(args: argparse.Namespace) -> None:
    """`pixquery export-onnx SPEC OUT`: writes the model; where it is on stdout."""
    from pixquery.api import export_model

    path = export_model(args.spec, args.out_dir)
    print(path)
    note(f"exported {args.spec}; use it with --model onnx:{path}")
