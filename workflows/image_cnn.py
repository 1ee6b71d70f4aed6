"""Images end to end: scikit-learn's digits -> a PNG folder tree -> image store -> CNN -> test accuracy.

1. writes scikit-learn's bundled handwritten digits (1,797 8x8 images) as real
   PNG files, one folder per class, so the image path is exercised end to end;
2. ingests the folder with ``bigdl.ingest.images`` (decoded in Dask tasks,
   resized to 28x28, per-channel mean/std stored for load-time normalisation);
3. trains the CNN (Conv 32 -> Conv 64 -> MaxPool -> Dropout -> Dense 128 ->
   Dropout -> Dense 10) with Adadelta on a Dask worker, streaming the store;
4. reports test loss and accuracy, and saves the learning curves, a confusion
   matrix and saliency maps (captum) for a few test digits as PNGs, SHAP heat maps
   (DeepLiftShap per pixel) and LIME superpixel overlays, and TensorBoard event files in ``runs/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import bigdl


def write_digits(folder: Path) -> int:
    """The digits as 8-bit PNGs under ``folder/<digit>/<index>.png``; returns the count."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        target = folder / str(label) / f"{index:04d}.png"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255 / 16).astype(np.uint8), mode="L").save(target)
    return len(digits.images)


def save_confusion_matrix(y_true, y_pred, labels, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axis = plt.subplots(figsize=(6, 5.5))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, display_labels=labels, ax=axis, colorbar=False)
    axis.set_title("CNN on the digits test split")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--workdir", default="work/digits")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    client = bigdl.cluster.start_or_connect(n_workers=2, memory_limit="2GiB")

    n_files = write_digits(workdir / "png")
    print(f"wrote {n_files} PNG files under {workdir / 'png'}")
    ds = bigdl.ingest.images(workdir / "png", store=workdir / "digits.zarr", mode="L", size=(28, 28),
                             validation=0.1, test=0.2, seed=0, overwrite=True)
    print(ds.info())

    import torch

    from bigdl.explain import plot_saliency, saliency
    from bigdl.models import CNN
    from bigdl.train import Trainer

    torch.manual_seed(0)
    trainer = Trainer(CNN(1, ds.n_classes, (28, 28)), optimizer="adadelta", lr=1.0, epochs=args.epochs,
                      batch_size=64, seed=0, log_dir=workdir / "runs")  # tensorboard --logdir work/.../runs
    trainer.fit(ds)
    metrics = trainer.evaluate(ds, split="test")
    print(f"\ntest: loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f} "
          f"on {metrics['n_samples']} images (target >= 0.97)")

    from bigdl.loaders.torch import ChunkLoader

    images, labels = next(iter(ChunkLoader(ds, "test", batch_size=10_000, shuffle=False)))
    with torch.no_grad():
        predicted = trainer.model.eval()(images).argmax(1).numpy()
    print(f"confusion matrix: {save_confusion_matrix(labels.numpy(), predicted, ds.classes, workdir / 'confusion.png')}")
    # One test digit per class (the split keeps the class-sorted file order).
    shown = [int(np.flatnonzero(labels.numpy() == code)[0]) for code in range(ds.n_classes)
             if (labels.numpy() == code).any()]
    maps = saliency(trainer, images[shown].numpy())
    titles = [f"{ds.classes[labels[i]]} -> {ds.classes[predicted[i]]}" for i in shown]
    print(f"saliency maps: {plot_saliency(images[shown].numpy(), maps, workdir / 'saliency.png', titles=titles)}")
    print(f"learning curves: {trainer.plot_history(workdir / 'learning_curves.png')}")

    from bigdl.explain import lime, plot_shap_images, shap_values

    # DeepLiftShap per pixel against 20 train digits, on the first 8 test digits (chunk by chunk on a worker).
    explanation = shap_values(trainer, ds, split="test", max_samples=8, background=20)
    print(f"SHAP heat maps: {plot_shap_images(explanation, workdir / 'shap_digits.png', rows=8)} "
          f"(additivity error {explanation.additivity_error:.2e} of output scale {explanation.output_scale:.2f})")
    superpixels = lime(trainer, ds, rows=[0, 1, 2], num_samples=1000, segments=30, num_features=5,
                       plot_dir=workdir / "lime")
    print(f"LIME superpixel overlays: {', '.join(superpixels.plots)}")
    client.close()


if __name__ == "__main__":
    main()
