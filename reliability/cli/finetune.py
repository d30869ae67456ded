"""``reliability finetune``: hardware-aware (noise-injection) fine-tuning, written back as ONNX."""

from __future__ import annotations

from reliability.cli._output import nonnegative_int, positive_int, refuse_overwrite


def add_parser(subparsers) -> None:
    """Add the ``finetune`` command to the ``reliability`` command's subparsers."""
    ft = subparsers.add_parser("finetune", help="noise-injection (hardware-aware) fine-tuning of a network, saved as ONNX")
    ft.add_argument("--model", required=True, help="network: .onnx or .npz layer file")
    ft.add_argument("--train", required=True, help=".npz with training X and y (not the evaluation set)")
    ft.add_argument("--out", required=True, help="the fine-tuned network (.onnx)")
    ft.add_argument("--noise", default="gaussian", choices=["gaussian", "censored"],
                    help="injected weight noise: gaussian, or right-censored gaussian (Yan et al. ICCAD'23)")
    ft.add_argument("--sigma", type=float, default=0.1, help="noise std relative to each layer's max|W| (default 0.1)")
    ft.add_argument("--censor", type=float, default=1.0, help="censoring point, standard deviations (censored noise)")
    ft.add_argument("--epochs", type=positive_int, default=10)
    ft.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ft.add_argument("--batch", type=positive_int, default=32)
    ft.add_argument("--chips", type=positive_int, default=4, help="noisy copies of the weights per mini-batch")
    ft.add_argument("--seed", type=nonnegative_int, default=0)
    ft.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    ft.set_defaults(func=run)


def run(args) -> int:
    """Fine-tune, print the loss per epoch, write ``--out``."""
    from reliability.cim import load_model, save_onnx
    from reliability.data.evalset import load_evalset
    from reliability.mitigation import finetune

    refuse_overwrite(args.out, "--out", args.force)
    net = load_model(args.model)
    X, y = load_evalset(args.train)
    tuned, hist = finetune(net, X, y, sigma=args.sigma, noise=args.noise, censor=args.censor, epochs=args.epochs,
                           lr=args.lr, batch=args.batch, chips=args.chips, rng=args.seed)
    for i, loss in enumerate(hist.loss, 1):
        print(f"epoch {i}: noisy training loss {loss:.4f}")
    save_onnx(tuned, args.out, overwrite=args.force)
    print(f"wrote {args.out}")
    return 0
