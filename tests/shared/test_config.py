import json
import re

import pytest

from shared.config import (
    ConfigError,
    load_node_config,
    node_config_from_json,
    parse_camera_flag,
    parse_size,
)
from shared.fields import FieldError
from shared.ids import InvalidId, check_id


def test_valid_config(tmp_path):
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"id": "node0", "store": "ws://nas:8100", "cameras": [
        {"id": "cam0", "source": "synthetic", "width": 640, "height": 360, "fps": 10}]}))
    cfg = load_node_config(path)
    assert cfg.id == "node0" and cfg.cameras[0].width == 640 and cfg.store_url == "ws://nas:8100"


@pytest.mark.parametrize("doc, field", [
    ({"id": "Node 0"}, "id"),
    ({"id": "n", "cameras": [{"id": "cam0", "fps": "fast"}]}, "cameras[0].fps"),
    ({"id": "n", "cameras": [{"id": "cam0", "width": 641}]}, "cameras[0].width"),
    ({"id": "n", "cameras": [{"id": "a"}, {"id": "a"}]}, "cameras[1].id"),
    ({"id": "n", "colour": "blue"}, "colour"),
    ({"id": "n", "segment_seconds": 0}, "segment_seconds"),
])
def test_errors_name_file_and_field(doc, field):
    with pytest.raises(FieldError) as err:
        node_config_from_json(doc, "node.json")
    assert err.value.field == field
    assert str(err.value).startswith(f"node.json: field '{field}'")


def test_unreadable_and_invalid_json_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_node_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON at line 1"):
        load_node_config(bad)


def test_flags():
    assert parse_camera_flag("cam0=synthetic:x.json") == ("cam0", "synthetic:x.json")
    assert parse_size("1280x720") == (1280, 720)
    with pytest.raises(ValueError):
        parse_camera_flag("cam0")
    with pytest.raises(ValueError):
        parse_size("1281x720")


@pytest.mark.parametrize("bad", ["", "A", "-x", "a" * 33, "a/b", "..", "a b"])
def test_bad_ids(bad):
    with pytest.raises(InvalidId):
        check_id(bad)


@pytest.mark.parametrize("store", ["ws://nas1:8100,ws://nas2:8100", ["ws://nas1:8100", "ws://nas2:8100/"],
                                   " ws://nas1:8100 , ws://nas2:8100"])
def test_store_may_be_a_list_or_comma_separated(store):
    cfg = node_config_from_json({"id": "n", "store": store}, "node.json")
    assert cfg.store_url == "ws://nas1:8100,ws://nas2:8100"
    assert cfg.stores == ("ws://nas1:8100", "ws://nas2:8100")


@pytest.mark.parametrize("store, says", [
    (["ws://nas1:8100", "ws://nas1:8100"], "item 2 ('ws://nas1:8100') is the same store as item 1"),
    ("ws://nas1:8100,,ws://nas2:8100", "item 2 of 3 is empty"),
    (["ws://nas1:8100", 8100], "item 2 is 8100, not a URL string"),
    (8100, "must be a URL, URLs separated by commas, or a list of URLs"),
])
def test_a_bad_store_list_names_the_field(store, says):
    with pytest.raises(FieldError, match=re.escape(says)) as err:
        node_config_from_json({"id": "n", "store": store}, "node.json")
    assert err.value.field == "store"
