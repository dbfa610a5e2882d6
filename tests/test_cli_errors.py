"""Bad input on the real command line: a clear message and the documented exit code, never a traceback."""

from __future__ import annotations

from tests.clirun import clvml

MINIMAL = "data:\n  tables:\n    transactions: {path: tx.csv}\ncutoffs: {start: 2024-01-01}\n"


def _config(tmp_path, text=MINIMAL):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nc1,2024-01-02,10\nc2,2024-01-03,12\n")
    (tmp_path / "c.yaml").write_text(text)
    return tmp_path / "c.yaml"


def test_spark_engine_without_pyspark_exits_8(tmp_path):
    # a real CLI process in which pyspark cannot be imported (as on an install without clvml[spark])
    proc = clvml("validate", str(_config(tmp_path)), "--engine", "spark",
                 prelude="import sys\nsys.modules['pyspark'] = None")
    assert proc.returncode == 8, proc.stderr
    assert "Traceback" not in proc.stderr and "ImportError" not in proc.stderr
    assert "error: engine: spark needs pyspark: pip install 'clvml[spark]'" in proc.stderr.splitlines()


def test_duplicate_yaml_key_exits_2_naming_the_line(tmp_path):
    text = MINIMAL.replace("cutoffs:", "  policies: {duplicates: error, duplicates: drop}\ncutoffs:")
    proc = clvml("validate", str(_config(tmp_path, text)))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: 1 problem(s) in {tmp_path / 'c.yaml'}:",
        "  - line 4: duplicate key 'duplicates' (already set earlier on the same line); each key may appear "
        "once in a mapping — YAML would silently keep the last one. Remove one of them"]
