"""The scoring job writes its chunks into the partition's one data file as they come; where a chunk's
types do not fit the file's, the rest go to part files and the merge unifies them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from clvml.scoring.job import DATA, ChunkWriter, _merge_parts


def chunk(ids: list[str], values: list, reasons: list) -> pa.Table:
    return pa.table({"customer_id": ids, "clv": values, "reason": reasons})


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_chunks_stream_into_the_one_data_file_one_row_group_each(tmp_path):
    parts = [chunk(["a", "b"], [1.5, 2.0], ["x", None]), chunk(["c"], [3.0], [None]),
             chunk(["d", "e", "f"], [4.0, None, 6.0], ["y", "z", None])]
    with ChunkWriter(tmp_path) as w:
        for b, t in enumerate(parts):
            w.write(t, b)
    assert files(tmp_path) == [DATA]  # nothing to merge
    assert _merge_parts(tmp_path)[DATA]["rows"] == 6
    f = pq.ParquetFile(tmp_path / DATA)
    assert f.metadata.num_row_groups == 3
    got = f.read()
    assert got.schema.field("reason").type == pa.string()  # the second chunk's all-null column joined it
    assert got.to_pydict() == pa.concat_tables(
        [parts[0], parts[1].cast(parts[0].schema), parts[2]]).to_pydict()


def test_an_untyped_first_chunk_writes_part_files_that_the_merge_unifies(tmp_path):
    first = pa.table({"customer_id": ["a"], "clv": [1.0], "reason": pa.array([None], pa.null())})
    second = chunk(["b"], [2.0], ["why"])
    with ChunkWriter(tmp_path) as w:
        w.write(first, 0)
        w.write(second, 1)
    assert files(tmp_path) == ["part-0000.parquet", "part-0001.parquet"]
    assert _merge_parts(tmp_path)[DATA]["rows"] == 2
    assert files(tmp_path) == [DATA]
    got = pq.read_table(tmp_path / DATA)
    assert got.schema.field("reason").type == pa.string()
    assert got.column("reason").to_pylist() == [None, "why"]


def test_a_chunk_that_does_not_cast_ends_the_stream_and_the_merge_keeps_the_order(tmp_path):
    ints = pa.table({"customer_id": ["a", "b"], "n": pa.array([1, 2], pa.int64())})
    halves = pa.table({"customer_id": ["c"], "n": pa.array([2.5], pa.float64())})  # not an exact int64
    later = pa.table({"customer_id": ["d"], "n": pa.array([7], pa.int64())})
    with ChunkWriter(tmp_path) as w:
        for b, t in enumerate([ints, halves, later]):
            w.write(t, b)
    assert files(tmp_path) == [DATA, "part-0001.parquet", "part-0002.parquet"]
    assert _merge_parts(tmp_path)[DATA]["rows"] == 4
    got = pq.read_table(tmp_path / DATA)
    assert got.column("customer_id").to_pylist() == ["a", "b", "c", "d"]
    assert got.column("n").to_pylist() == [1.0, 2.0, 2.5, 7.0]  # unified to float64, nothing lost
