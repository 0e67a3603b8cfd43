"""Zero-shot prediction for users: a finished run + NEW class names -> scores of images among them.

The graph networks' weights do not depend on the graph's size, so a trained model is rebuilt on the
run's graph extended by the new classes (and their hypernyms up to ``entity``), fed GloVe vectors of
every node, and its predicted classifier rows of the new classes score the CNN's features. Class
names are WordNet nouns: a synset name (``zebra.n.01``), a wnid (``n02391049``) or a plain word; a
word with several noun senses is refused with the candidates listed, one that WordNet lacks with
close matches.

    clf = ZeroShotClassifier.from_run("runs/dgp-quick")
    clf.set_classes(["zebra.n.01", "tiger.n.02", "sports_car.n.01"])
    scores = clf.scores(images)          # (N, 3): [f(x), 1] . w_c
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from paperzoo.core.runs import RunDir
from paperzoo.data.text import load_glove
from paperzoo.data.vision import normalize
from paperzoo.data.wordnet import WordNet, class_graph, embed_synsets
from paperzoo.methods.dgp import cnn as cnnlib
from paperzoo.methods.dgp import pipeline as pl

log = logging.getLogger(__name__)


class ZeroShotClassifier:
    """A run's CNN and one of its graph models, ready to classify images among any WordNet nouns."""

    def __init__(self, run_dir: RunDir, *, model: str | None = None, finetuned: bool = True):
        cfg = run_dir.config
        if run_dir.method != "dgp":
            raise ValueError(f"{run_dir.path} is a {run_dir.method} run, not a dgp run")
        if cfg.dataset == "imagenet_graph":
            raise ValueError(f"run {run_dir.path} is an imagenet_graph run: it has synthetic weights and no CNN")
        best = run_dir.finished_checkpoint("best")
        self.model_name = model or cfg.headline_model
        if self.model_name not in best["graph"]:
            raise KeyError(f"run {run_dir.path} has no graph model {self.model_name!r}; it has "
                           f"{', '.join(best['graph'])}")
        self.cfg, self.run_dir, self.best = cfg, run_dir, best
        use_ft = finetuned and "cnn_ft" in best and self.model_name == cfg.headline_model
        if finetuned and not use_ft:
            log.info("no fine-tuned CNN for %s in %s: using the CNN trained on the seen classes",
                     self.model_name, run_dir.path)
        self.finetuned = use_ft
        state = best["cnn_ft" if use_ft else "cnn"]
        in_channels = int(state["features.0.weight"].size(1))
        self.net = cnnlib.ConvNet(in_channels, len(best["seen_nodes"]), cfg.cnn_width, cfg.feature_dim)
        if use_ft:
            self.net.fc.requires_grad_(False)
        self.net.load_state_dict(state)
        self.net.eval()
        self.mean, self.std = best["image_mean"], best["image_std"]
        self.image_size = int(best.get("image_size", 32))
        self.wordnet = WordNet.load(run_dir.data_root)
        self.class_names: list[str] = []
        self.weights: torch.Tensor | None = None

    @classmethod
    def from_run(cls, path: str | os.PathLike, *, data_root: str | None = None, model: str | None = None,
                 finetuned: bool = True) -> ZeroShotClassifier:
        return cls(RunDir.open(path, data_root=data_root, purpose="eval"), model=model, finetuned=finetuned)

    def set_classes(self, names: Sequence[str]) -> list[str]:
        """Resolve ``names`` to WordNet synsets and predict their classifier rows; returns the synset
        names. Raises ``AmbiguousClassName`` / ``UnknownClassName`` (one message per bad name)."""
        if not names:
            raise ValueError("give at least one class name")
        synsets = [self.wordnet.resolve(n) for n in names]
        offsets = [s.offset for s in synsets]
        if len(set(offsets)) < len(offsets):
            raise ValueError(f"two class names resolve to the same synset: {[self.wordnet.name(o) for o in offsets]}")
        trained = [int(w[1:]) for w in self.best["node_wnids"]]
        graph = class_graph(self.wordnet, trained + [o for o in offsets if o not in set(trained)])
        if graph.offsets[:len(trained)] != trained:  # the run's nodes keep their indices
            raise RuntimeError("the extended graph reordered the run's nodes")
        vectors, missing = embed_synsets(self.wordnet, graph.offsets, load_glove(self.run_dir.data_root))
        new_missing = [self.wordnet.name(o) for o in offsets if self.wordnet.name(o) in set(missing)]
        if new_missing:
            log.warning("no GloVe vector for any lemma of %s: their rows come from the graph alone",
                        ", ".join(new_missing))
        task = pl.Task(self.cfg.dataset, vectors, graph.edges, list(graph.names),
                       self.best["seen_nodes"], torch.zeros(0, dtype=torch.long), [], [], missing)
        out_dim = int(self.best["targets"].size(1))
        model = pl.make_graph_model(self.model_name, task, out_dim, self.cfg)
        missing_keys, unexpected = model.load_state_dict(self.best["graph"][self.model_name], strict=False)
        learnable = {k for k, _ in model.named_parameters()}
        if learnable & set(missing_keys) or unexpected:
            raise RuntimeError(f"{self.run_dir.checkpoint_path('best')}: graph model weights do not fit: missing "
                               f"{sorted(learnable & set(missing_keys))}, unexpected {unexpected}")
        model.eval()
        with torch.no_grad():
            pred = F.normalize(model(vectors), dim=1)
        index = {o: i for i, o in enumerate(graph.offsets)}
        self.weights = pred[[index[o] for o in offsets]]
        self.class_names = [self.wordnet.name(o) for o in offsets]
        return self.class_names

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] of any size -> the run's size, channels and normalisation."""
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        channels = self.mean.numel()
        if images.size(1) != channels:
            if channels == 1:
                images = images.mean(1, keepdim=True)
            elif images.size(1) == 1:
                images = images.expand(-1, channels, -1, -1)
            else:
                raise ValueError(f"images have {images.size(1)} channels; the run's CNN takes {channels}")
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   antialias=True, align_corners=False)
        return normalize(images, self.mean, self.std)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N, classes) scores ``[f(x), 1] . w_c`` of images (float in [0, 1]) among the set classes."""
        if self.weights is None:
            raise RuntimeError("call set_classes(names) first")
        return cnnlib.features(self.net, self.prepare(images)) @ self.weights.T


def read_images(paths: Sequence[str | os.PathLike]) -> torch.Tensor:
    """Image files (PNG, JPEG, ... via Pillow) -> float (N, 3, H, W) in [0, 1], resized to the first's size."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    out, size = [], None
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                size = size or im.size
                out.append(torch.from_numpy(np.asarray(im.resize(size), dtype=np.float32) / 255.0).permute(2, 0, 1))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{p}: not a readable image ({e})") from None
    if not out:
        raise ValueError("no images given")
    return torch.stack(out)


def predict_main(args) -> int:
    """``paperzoo dgp predict``: print the top classes of every image."""
    clf = ZeroShotClassifier.from_run(args.run_dir, data_root=args.data_root, model=args.model,
                                      finetuned=not args.no_finetuned)
    names = [n.strip() for part in args.classes for n in part.split(",") if n.strip()]
    resolved = clf.set_classes(names)
    scores = clf.scores(read_images(args.images))
    top = min(args.top, len(resolved))
    probs = scores.softmax(1)
    for path, row, prob in zip(args.images, scores, probs):
        order = row.argsort(descending=True)[:top].tolist()
        picks = ", ".join(f"{resolved[i]} {row[i]:.3f} (p {prob[i]:.2f})" for i in order)
        print(f"{Path(path).name}: {picks}")
    return 0
