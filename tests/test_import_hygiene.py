"""The node and the store never load Textual; the console never loads the encoder."""

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_node_and_store_do_not_import_textual():
    modules = loaded_after("import node.app, store.app, sht.cli")
    assert "textual" not in modules and "node.app" in modules


def test_shared_imports_nothing_of_the_services():
    modules = loaded_after("import shared.config, shared.protocol.live, shared.protocol.ingest")
    assert not {m for m in modules if m.split(".")[0] in ("node", "store", "console")}


def test_console_does_not_load_the_encoder():
    modules = loaded_after("import console.app")
    assert "av" not in modules and "node.capture.encode" not in modules
