import json

import pytest

from paperzoo import cli


def test_help_of_every_command(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as exit_:
            cli.main([name, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "usage: paperzoo" in out and len(out) > 140, name


def test_list_and_show(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "conve" in out and "paper_fb15k237" in out and "installed" in out
    assert cli.main(["show", "conve", "--preset", "quick"]) == 0
    out = capsys.readouterr().out
    assert "Dettmers" in out and "label_smoothing_form" in out and "e/N" in out


def test_run_eval_report(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # three epochs: the report draws training curves only from at least three
    assert cli.main(["run", "conve", "--preset", "tiny", "--set", "epochs=3", "--run-dir", str(run_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for name in ("config.yaml", "log.csv", "metrics.json", "checkpoints/last.pt", "checkpoints/best.pt", "run.log"):
        assert (run_dir / name).exists(), name
    assert cli.main(["eval", str(run_dir)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test/mrr"] == pytest.approx(metrics["test/mrr"])
    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    curves = list((tmp_path / "rep").glob("*/run-*.png"))  # the method's own or the report's generic curves
    assert "conve/tiny" in report and curves and all(p.stat().st_size > 1000 for p in curves)


def test_reproduce_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "rep"
    assert cli.main(["reproduce", "conve", "--preset", "tiny", "--set", "epochs=2", "--out", str(out)]) == 0
    assert (out / "report.md").exists() and (out / "runs" / "conve-tiny" / "metrics.json").exists()
    # a second call reuses the finished run instead of training again
    mtime = (out / "runs" / "conve-tiny" / "metrics.json").stat().st_mtime
    assert cli.main(["reproduce", "conve", "--preset", "tiny", "--out", str(out)]) == 0
    assert (out / "runs" / "conve-tiny" / "metrics.json").stat().st_mtime == mtime


@pytest.mark.parametrize("argv, message", [
    (["run", "conve", "--set", "nope=1"], "no field(s) 'nope'"),
    (["run", "conve", "--preset", "huge"], "no preset 'huge'"),
    (["run", "nomethod"], "unknown method 'nomethod'"),
    (["eval", "/nonexistent/run"], "not a run folder"),
])
def test_bad_input_gets_one_clear_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_data_lists_what_was_tried(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAPERZOO_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["data"]) == 0
    out = capsys.readouterr().out
    assert "MISSING  fb15k237" in out and str(tmp_path / "nothing" / "kg" / "FB15k-237") in out


def test_data_audit_kg_on_a_folder(tmp_path, capsys):
    from paperzoo.data.synthetic import planted_kg, write_kg

    write_kg(planted_kg(seed=0), tmp_path / "toy")
    assert cli.main(["data", "audit-kg", str(tmp_path / "toy"), "--threshold", "0.6"]) == 0
    out = capsys.readouterr().out
    assert "# Leakage audit" in out and "b0_inv" in out
    assert cli.main(["data", "audit-kg", str(tmp_path / "toy"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # brute force from the files: test triples (h, r, t) whose entity pair occurs reversed in train
    rows = {s: [line.split("\t") for line in (tmp_path / "toy" / f"{s}.txt").read_text().splitlines()]
            for s in ("train", "test")}
    pairs = {(h, t) for h, _, t in rows["train"]}
    reverse = sum((t, h) in pairs for h, _, t in rows["test"]) / len(rows["test"])
    assert report["leakage_train"]["reverse_pair"] == pytest.approx(reverse) and report["num_entities"] == 60


def test_parse_seeds_and_sweep_points():
    from paperzoo.runner import sweep_points

    assert cli.parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ValueError, match="seeds"):
        cli.parse_seeds("a-b")
    points = sweep_points({"model": ["conve", "distmult"]}, [0, 1])
    assert points == [{"model": "conve", "seed": 0}, {"model": "conve", "seed": 1},
                      {"model": "distmult", "seed": 0}, {"model": "distmult", "seed": 1}]


def test_sweep_runs_every_point_once_and_aggregates_seeds(tmp_path, capsys):
    argv = ["sweep", "conve", "--preset", "tiny", "--grid", "model=conve,distmult", "--seeds", "0-1",
            "--set", "epochs=2", "--out", str(tmp_path / "sw")]
    assert cli.main(argv) == 0
    folders = sorted(p.name for p in (tmp_path / "sw").iterdir() if p.name != "report")
    assert folders == ["model=conve-seed=0", "model=conve-seed=1", "model=distmult-seed=0",
                       "model=distmult-seed=1"]
    stamp = (tmp_path / "sw" / "model=conve-seed=0" / "metrics.json").stat().st_mtime_ns
    assert cli.main(argv) == 0  # finished points are not run again
    assert (tmp_path / "sw" / "model=conve-seed=0" / "metrics.json").stat().st_mtime_ns == stamp
    report = (tmp_path / "sw" / "report" / "report.md").read_text()
    assert "## Across seeds" in report
    assert "| conve/tiny (epochs=2) | " in report and "| conve/tiny (model=distmult, epochs=2) | " in report
    assert " ± " in report


def test_select_best_picks_best_mean_per_group_and_keeps_grid_order_on_ties():
    from paperzoo.runner import select_best

    def run(model, lr, seed, score):
        return {"model": model, "lr": lr, "seed": seed}, {"valid/acc": score}

    points = [run("a", 1, 0, .5), run("a", 1, 1, .7),   # mean .6
              run("a", 2, 0, .8), run("a", 2, 1, .6),   # mean .7: best for a
              run("b", 1, 0, .4), run("b", 1, 1, .4),   # tie with lr=2: the earlier point wins
              run("b", 2, 0, .3), run("b", 2, 1, .5)]
    a, b = select_best(points, ["model"], "valid/acc")
    assert a.group == {"model": "a"} and a.settings == {"lr": 2} and a.score == pytest.approx(.7)
    assert [r[0]["lr"] for r in a.ranking] == [2, 1]
    assert b.settings == {"lr": 1}
    low = select_best(points, ["model"], "valid/acc", maximize=False)
    assert [c.settings["lr"] for c in low] == [1, 1]
    with pytest.raises(ValueError, match="reports 'valid/missing'"):
        select_best(points, ["model"], "valid/missing")


def test_tune_searches_per_group_then_runs_the_choice_on_fresh_seeds(tmp_path, capsys):
    out = tmp_path / "tune"
    argv = ["tune", "conve", "--preset", "tiny", "--per", "model=conve,distmult", "--grid", "lr=0.003,0.01",
            "--select", "valid/mrr", "--search-seeds", "7", "--seeds", "0", "--set", "epochs=2",
            "--out", str(out)]
    assert cli.main(argv) == 0
    assert len(list((out / "search").glob("model=*-lr=*-seed=7"))) == 4
    selected = json.loads((out / "selected.json").read_text())
    assert [c["group"]["model"] for c in selected["choices"]] == ["conve", "distmult"]
    for choice in selected["choices"]:
        scores = {r["settings"]["lr"]: r["score"] for r in choice["ranking"]}
        assert choice["score"] == max(scores.values()) == scores[choice["settings"]["lr"]]
        lr = choice["settings"]["lr"]
        assert (out / "final" / f"model={choice['group']['model']}-lr={lr}-seed=0" / "metrics.json").exists()
    assert "selected on valid/mrr" in capsys.readouterr().out
    assert cli.main([*argv[:-2], "--search-seeds", "0", "--out", str(tmp_path / "x")]) != 0
    assert "overlap" in capsys.readouterr().err
    assert cli.main(["tune", "conve", "--per", "model=conve", "--grid", "lr=0.1", "--select", "test/mrr",
                     "--out", str(tmp_path / "y")]) != 0
    assert "leaks the test set" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_interrupt_and_arithmetic_errors_reach_the_user_as_one_line(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    def divides_by_zero(args):
        return 1 / 0

    for name in ("run", "eval"):
        monkeypatch.setitem(cli.COMMANDS, name, interrupted)
    assert cli.main(["eval", "runs/x"]) == 130
    assert capsys.readouterr().err == "interrupted\n"  # no --resume advice for eval
    assert cli.main(["run", "conve"]) == 130
    assert "paperzoo run --resume RUN_DIR" in capsys.readouterr().err
    monkeypatch.setitem(cli.COMMANDS, "report", divides_by_zero)
    assert cli.main(["report", "runs"]) == 2
    assert capsys.readouterr().err == "paperzoo report: error: division by zero\n"


def test_os_errors_reach_the_user_as_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = cli.main(["run", "conve", "--preset", "tiny", "--run-dir", str(blocker / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("paperzoo run: error:") and "Not a directory" in err[0] and str(blocker) in err[0]
    assert blocker.read_text() == "not a folder"


def test_a_closed_output_pipe_ends_the_command_quietly():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "paperzoo.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes (`paperzoo list | head -0`)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err.decode()
    assert err.decode().strip() == ""
