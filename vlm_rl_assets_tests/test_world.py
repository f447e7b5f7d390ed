from vlm_rl_assets.prompts import world
from vlm_rl_assets.store.base import png_bytes


def test_generation_is_deterministic_by_seed():
    first = world.generate("scene", "train", 5, seed=3)
    again = world.generate("scene", "train", 5, seed=3)
    assert [png_bytes(i.image) for i in first] == [png_bytes(i.image) for i in again]
    assert [i.answer for i in first] == [i.answer for i in again]
    other = world.generate("scene", "train", 5, seed=4)
    assert [png_bytes(i.image) for i in first] != [png_bytes(i.image) for i in other]


def test_splits_draw_different_items():
    train = {png_bytes(i.image) for i in world.generate("color", "train", 50, seed=0)}
    bench = {png_bytes(i.image) for i in world.generate("color", "bench", 50, seed=0)}
    assert not train & bench


def test_each_task_answer_matches_its_scene():
    for item in world.generate("count", "train", 30, seed=0):
        assert item.answer == str(len(item.objects))
    for item in world.generate("shape_choice", "train", 30, seed=0):
        assert item.choices[("ABCD".index(item.answer))] == item.objects[0].shape
    for item in world.generate("describe", "train", 30, seed=0):
        obj = item.objects[0]
        assert item.answer == f"colour: {obj.colour}; size: {obj.size}; position: {obj.position}"
    for item in world.generate("scene", "train", 30, seed=0):
        assert all(obj.name in item.answer for obj in item.objects)


def test_objects_are_large_inside_and_apart():
    for item in world.generate("count", "train", 40, seed=1):
        assert item.image.size == (world.IMAGE_SIZE, world.IMAGE_SIZE)
        for obj in item.objects:
            assert obj.radius >= 16
            assert obj.radius <= obj.x < world.IMAGE_SIZE - obj.radius
        centres = [(o.x, o.y, o.radius) for o in item.objects]
        for i, (xa, ya, ra) in enumerate(centres):
            for xb, yb, rb in centres[i + 1 :]:
                assert (xa - xb) ** 2 + (ya - yb) ** 2 > (ra + rb) ** 2


def test_the_drawn_colour_is_the_answer():
    for item in world.generate("color", "train", 10, seed=0):
        obj = item.objects[0]
        shade, colour = item.answer.split()
        assert item.image.getpixel((obj.x, obj.y)) == obj.fill != world.COLOURS[colour]
        assert obj.colour == colour and obj.shade == shade


def test_unknown_task_names_the_known_ones():
    import pytest

    with pytest.raises(ValueError, match="known tasks"):
        world.generate("ocr", "train", 1, seed=0)
