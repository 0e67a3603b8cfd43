"""``paperzoo dgp ...``: the method's own commands (argparse only here: no torch import until used)."""
from __future__ import annotations


def add_parser(sub) -> None:
    """``paperzoo dgp predict RUN_DIR --classes ... IMAGE...``."""
    p = sub.add_parser("dgp", help="zero-shot tools of the dgp method: predict among new class names",
                       description="Zero-shot tools of the dgp method.")
    dsub = p.add_subparsers(dest="dgp_command", metavar="COMMAND", required=True)
    q = dsub.add_parser(
        "predict", help="classify images among NEW class names with a finished dgp run",
        description="Map class names to WordNet noun synsets (a synset name like zebra.n.01, a wnid, or a word "
                    "with one noun sense), predict their classifiers with the run's graph model, and print the "
                    "top classes of every image.",
        epilog="example: paperzoo dgp predict runs/dgp-quick --classes zebra.n.01,tiger.n.02,sports_car.n.01 "
               "img1.png img2.jpg")
    q.add_argument("run_dir", metavar="RUN_DIR")
    q.add_argument("images", nargs="+", metavar="IMAGE")
    q.add_argument("--classes", action="append", required=True, metavar="NAMES",
                   help="comma-separated class names (repeatable)")
    q.add_argument("--model", help="graph model of the run (default: the run's headline model)")
    q.add_argument("--no-finetuned", action="store_true", help="use the CNN before fine-tuning")
    q.add_argument("--top", type=int, default=3, help="classes printed per image (default 3)")
    q.add_argument("--data-root", metavar="DIR", help="data root (WordNet, GloVe)")


def main(args) -> int:
    if args.dgp_command == "predict":
        from paperzoo.methods.dgp.predict import predict_main

        return predict_main(args)
    raise ValueError(f"unknown dgp command {args.dgp_command!r}")
