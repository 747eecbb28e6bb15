"""Entity memory: retrieval by id, bounds, returning characters, reference images, casting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from memory_parts import SIZE, make_gen, make_story, plan_for, ref_image, tiny_parts

from longtake.memory import CastMember, EntityMemory, MemoryBankError, MemoryConfig, MemoryEntry
from longtake.memory.cast import image_to_video
from longtake.model import KVCache


def entry(frame: int, entities: tuple[str, ...]) -> MemoryEntry:
    k = torch.full((1, 2, 3, 4), float(frame))
    return MemoryEntry(frame, max(frame, 0), entities, entities[0], "frame", [k, k], [k, k])


@pytest.fixture(scope="module")
def parts():
    return tiny_parts()


def test_retrieval_is_by_id_round_robin_anchor_first():
    mem = EntityMemory(slots=4, per_entity=3, capacity=10)
    for f, ents in [(0, ("room", "mia")), (5, ("room", "tom")), (9, ("room", "mia")), (12, ("park", "mia"))]:
        mem.add(entry(f, ents))
    assert [e.frame for e in mem.of("mia")] == [0, 9, 12]
    # mia: anchor 0, then newest 12, 9; tom: 5 -> round robin mia, tom, mia, tom, ...
    assert [e.frame for e in mem.retrieve(("mia", "tom"))] == [0, 5, 12, 9]
    assert [e.frame for e in mem.retrieve(("mia", "tom"), exclude={0}, limit=2)] == [12, 5]
    assert mem.retrieve(("nobody",)) == []


def test_bounded_per_entity_and_in_all_and_anchors_stay():
    mem = EntityMemory(slots=2, per_entity=3, capacity=6)
    for f in range(40):
        ents = ("room", "mia") if f % 2 else ("park", f"extra{f}")
        mem.add(entry(f, ents))
        assert len(mem) <= 6
        assert all(len(frames) <= 3 for frames in mem.tags.values())
        assert all(fr in mem.entries for frames in mem.tags.values() for fr in frames)
    assert [e.frame for e in mem.of("mia")][0] == 1  # mia's first appearance is her anchor
    assert [e.frame for e in mem.of("mia")][1:] == [37, 39]
    assert not mem.add(entry(39, ("room",)))  # never the same frame twice


def test_bad_settings_are_refused():
    with pytest.raises(MemoryBankError, match="capacity"):
        EntityMemory(slots=4, per_entity=2, capacity=3)


def test_a_returning_character_gets_her_frames_back(parts):
    gen = make_gen(parts, MemoryConfig(mode="entity", entity_place=False))  # her frames from the room, by id
    tl = plan_for(gen, make_story())
    back = next(c for c in tl.chunks if c.index > 4 and "mia" in c.characters)  # the park shot
    for fc in gen.stream(tl, seed=0):
        if fc.chunk.index == back.index:
            mia = {e.frame for e in gen.memory.of("mia")}
            assert gen.selected and set(gen.selected) <= mia  # only hers: the park has no frame yet
            assert not set(gen.selected) & set(gen.cache.frame_indices[:-gen.latent_frames_per_chunk])  # not from the window
            assert min(gen.selected) < back.index * gen.latent_frames_per_chunk - 6  # long out of the window
    assert gen.memory.of("tom") and gen.memory.of("park")


def test_the_place_gate_keeps_frames_of_other_places_out_by_default(parts):
    gen = make_gen(parts, "entity")
    assert gen.memory_config.entity_place
    tl = plan_for(gen, make_story())
    back = next(c for c in tl.chunks if c.index > 4 and "mia" in c.characters)  # mia in the park, her frames are from the room
    installed = 0
    for fc in gen.stream(tl, seed=0):
        assert gen.memory.same_place
        chosen = [gen.memory.entries[f] for f in gen.selected]
        assert all(e.location == fc.chunk.location for e in chosen), f"chunk {fc.chunk.index}: a frame of another place installed"
        installed += len(chosen)
        if fc.chunk.index == back.index:
            assert gen.selected == [] and gen.memory.of("mia")  # she has frames, all from the room
    assert installed > 0  # frames of the same place still come back


def test_reference_images_are_encoded_before_the_first_chunk(parts):
    dit, vae, text = parts
    img = ref_image(1, 48, 40)
    cast = [CastMember("mia", "character", "Mia.", (img,)), CastMember("room", "location", "Setting: room.")]
    gen = make_gen(parts, "entity", cast=cast)
    tl = plan_for(gen, make_story())
    first = next(iter(gen.stream(tl, seed=0)))
    assert first.chunk.index == 0 and gen.selected == [-1]  # the ref is in chunk 0's memory
    ref = gen.memory.entries[-1]
    assert ref.kind == "ref" and ref.entities == ("mia",) and ref.chunk == -1
    assert not gen.memory.of("room") or gen.memory.of("room")[0].frame >= 0  # no image, no casting: nothing before chunk 0
    # The entry is the VAE latent of the image written alone at sigma 0 under Mia's prompt.
    with torch.no_grad():
        latent = vae.encode(image_to_video(img, SIZE, SIZE))  # (1, C, 1, h, w)
        scratch = KVCache(dit.config.num_layers, sink_frames=0, window_frames=None)
        emb, _ = text.encode(["Mia."])
        scratch.set_prompt(dit.encode_prompt(emb))
        dit(latent, 0.0, cache=scratch, write_cache=True)
    for layer in range(dit.config.num_layers):
        k, v = scratch.frame_kv(layer, 0)
        torch.testing.assert_close(ref.keys[layer], k)
        torch.testing.assert_close(ref.values[layer], v)


def test_casting_makes_one_frame_per_member_without_images(parts):
    cast = [CastMember("mia", "character", "Mia."), CastMember("tom", "character", "Tom.", (ref_image(2),)),
            CastMember("room", "location", "Setting: room."), CastMember("attic", "location", "Setting: attic.")]
    cfg = make_gen(parts, "entity").memory_config.replace(casting=True)
    runs = []
    for _ in range(2):
        gen = make_gen(parts, cfg, cast=cast)
        next(iter(gen.stream(plan_for(gen, make_story()), seed=5)))
        outside = {e.entities[0]: e.kind for e in gen.memory.entries.values() if e.frame < 0}
        assert outside == {"mia": "cast", "tom": "ref", "room": "cast"}  # attic is not in the story
        runs.append(gen.memory.of("mia")[0].keys[0])
    assert torch.equal(runs[0], runs[1])  # seeded: the same casting frame every time


def test_image_to_video_crops_to_the_aspect_and_scales():
    img = np.zeros((30, 60, 3), np.uint8)
    img[:, 15:45] = 255  # the centre square is white, the sides black
    video = image_to_video(img, 16, 16)
    assert video.shape == (1, 3, 1, 16, 16) and video.dtype == torch.float32
    assert torch.allclose(video, torch.ones_like(video))
    with pytest.raises(MemoryBankError, match="uint8"):
        CastMember("mia", "character", "Mia.", (img.astype(np.float32),))


def test_import_renumbers_and_keeps_only_known_entities():
    old = EntityMemory(slots=2, per_entity=2, capacity=8)
    for f, ents in [(0, ("room", "mia")), (3, ("room", "ghost")), (6, ("park", "mia"))]:
        old.add(entry(f, ents))
    new = EntityMemory(slots=2, per_entity=2, capacity=8)
    assert new.import_entries(old.state_dict(), entities={"mia", "room"}) == 3
    assert all(f < 0 and e.kind == "import" for f, e in new.entries.items())
    assert [e.keys[0].flatten()[0].item() for e in new.of("mia")] == [0.0, 6.0]  # order (anchor) kept
    assert "ghost" not in new.tags and "park" not in new.tags
