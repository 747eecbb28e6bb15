"""StoryWorld dataset shards: deterministic bytes, resume, streaming reads, exact content."""

import json
from pathlib import Path

import numpy as np
import pytest

from longtake.plan import plan
from longtake.world.errors import WorldError
from longtake.world.renderer import WorldRenderer
from longtake.world.shards import ShardConfig, ShardDataset, clip_windows, iter_shard, write_shards

SETTINGS = dict(num_stories=3, seed=5, duration_range=(10.0, 14.0), size=(32, 32), clip_chunks=3, stories_per_shard=2)


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards") / "ds"
    write_shards(root, **SETTINGS)
    return root


def test_clip_windows_tile_and_end_align():
    assert clip_windows(9, 3) == [0, 3, 6]
    assert clip_windows(10, 3) == [0, 3, 6, 7]
    assert clip_windows(2, 3) == []
    assert clip_windows(3, 3) == [0]


def test_layout_and_index(dataset):
    names = sorted(p.name for p in dataset.iterdir())
    assert names == ["config.json", "index.json", "shard-00000.tar", "shard-00001.tar"]
    index = json.loads((dataset / "index.json").read_text())
    assert index["config"]["num_stories"] == 3 and len(index["stories"]) == 3
    assert [s["stories"] for s in index["shards"]] == [[0, 2], [2, 3]]
    assert index["num_clips"] == sum(s["clips"] for s in index["shards"]) > 0
    assert index["clip_frames"] == 36


def test_same_settings_same_bytes_and_resume(dataset, tmp_path):
    again = tmp_path / "again"
    write_shards(again, **SETTINGS)
    assert _files(again) == _files(dataset)
    # a killed run: one shard missing, a stale temp file left behind -> resume gives the same bytes
    (again / "shard-00001.tar").unlink()
    (again / "index.json").unlink()
    (again / ".shard-00001.tar.abc.tmp").write_bytes(b"junk")
    events = []
    write_shards(again, **SETTINGS, on_progress=events.append)
    (again / ".shard-00001.tar.abc.tmp").unlink()
    assert _files(again) == _files(dataset)
    assert [e.skipped for e in events if e.shard == 0] == [True]
    assert any(not e.skipped for e in events if e.shard == 1)
    assert events[-1].stories_done == 3


def test_other_seed_other_bytes_and_mixed_settings_refused(dataset, tmp_path):
    other = tmp_path / "other"
    write_shards(other, **{**SETTINGS, "seed": 6})
    assert (other / "shard-00000.tar").read_bytes() != (dataset / "shard-00000.tar").read_bytes()
    with pytest.raises(WorldError, match="other settings"):
        write_shards(other, **SETTINGS)


def test_samples_match_a_direct_render(dataset):
    config = ShardConfig(**{k: v for k, v in SETTINGS.items() if k != "size"}, width=32, height=32)
    story = config.story(0)
    timeline = plan(story)
    renderer = WorldRenderer(story, width=32, height=32)
    samples = [s for s in iter_shard(dataset / "shard-00000.tar") if s["meta"]["story"]["index"] == 0]
    starts = clip_windows(len(timeline), 3)
    assert [s["meta"]["clip"]["first_chunk"] for s in samples] == starts
    covered = set()
    for sample in samples:
        first = sample["meta"]["clip"]["first_chunk"]
        chunks = timeline.chunks[first : first + 3]
        rendered = [renderer.render_chunk(c) for c in chunks]
        frames = np.concatenate([f for f, _ in rendered])
        assert sample["frames"].dtype == np.uint8 and sample["frames"].shape == (36, 32, 32, 3)
        assert np.array_equal(sample["frames"], frames)
        masks = np.stack([t.mask for _, ts in rendered for t in ts])
        assert np.array_equal(sample["masks"], masks)
        assert sample["prompts"] == [c.prompt for c in chunks]
        assert sample["entities"] == [list(c.entities) for c in chunks]
        assert sample["boxes"].shape == (36, len(story.characters), 4)
        # boxes agree with the masks
        for f in range(36):
            for k, cid in enumerate(sample["cast"]):
                ys, xs = np.nonzero(sample["masks"][f] == k + 1)
                if xs.size:
                    assert sample["boxes"][f, k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                else:
                    assert sample["boxes"][f, k].tolist() == [-1, -1, -1, -1]
        assert {t["location"] for t in sample["truth"]} <= {c.location for c in chunks}
        covered.update(range(sample["meta"]["clip"]["start_frame"], sample["meta"]["clip"]["start_frame"] + 36))
    assert covered == set(range(timeline.num_frames))
    assert samples[0]["meta"]["story"]["story_hash"] == story.content_hash()


def test_dataset_order_is_deterministic_and_complete(dataset):
    index = json.loads((dataset / "index.json").read_text())
    plain = [s["key"] for s in ShardDataset(dataset)]
    assert plain == sorted(plain) and len(plain) == index["num_clips"] == len(ShardDataset(dataset))
    a = [s["key"] for s in ShardDataset(dataset, shuffle_buffer=4, seed=1)]
    b = [s["key"] for s in ShardDataset(dataset, shuffle_buffer=4, seed=1)]
    c = [s["key"] for s in ShardDataset(dataset, shuffle_buffer=4, seed=2)]
    assert a == b and sorted(a) == plain and a != plain
    assert sorted(c) == plain and c != a
    ds = ShardDataset(dataset, shuffle_buffer=4, seed=1)
    ds.set_epoch(1)
    assert sorted(s["key"] for s in ds) == plain
    # ranks split the shards: disjoint and complete
    r0 = [s["key"] for s in ShardDataset(dataset, rank=0, world_size=2)]
    r1 = [s["key"] for s in ShardDataset(dataset, rank=1, world_size=2)]
    assert not set(r0) & set(r1) and sorted(r0 + r1) == plain


def test_dataloader_workers_split_shards(dataset):
    from torch.utils.data import DataLoader

    loader = DataLoader(ShardDataset(dataset), batch_size=None, num_workers=2, collate_fn=lambda s: s["key"])
    keys = list(loader)
    assert sorted(keys) == sorted(s["key"] for s in ShardDataset(dataset))


def test_streaming_read_holds_one_clip_at_a_time(dataset):
    # iterate the whole dataset through a generator; nothing keeps references to past clips
    count = 0
    for sample in ShardDataset(dataset, shuffle_buffer=2, seed=0):
        assert sample["frames"].flags.owndata or sample["frames"].base is not None
        count += 1
    assert count == json.loads((dataset / "index.json").read_text())["num_clips"]


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(WorldError, match="no index.json"):
        ShardDataset(tmp_path)
    with pytest.raises(WorldError, match="split"):
        write_shards(tmp_path / "x", num_stories=1, seed=0, split="valid")
