"""Published weights by name (nbs/00d_hub.ipynb, nbs/01a_zoo.ipynb): every download here comes from a local HTTP server on
127.0.0.1 standing in for the publisher (TINYACTION_WEIGHTS_URL), into a TORCH_HOME of the test's own; nothing reaches
the internet."""
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from functools import partial

import pytest
import torch

from tinyaction.hub import WEIGHTS_URL_ENV, PublishedWeights, WeightsDownloadError, fetch_weights
from tinyaction.models import r2plus1d_34
from tinyaction.zoo import MODELS, get_model, list_models

from conftest import REPO_ROOT, copy_dataset, rewrite_split

IG65M_KINETICS = MODELS["r2plus1d_34"].weights  # the 2021 recipe's published weights (no hash recorded: see 00d_hub)


class Publisher(http.server.SimpleHTTPRequestHandler):
    "Serves a folder; counts requests; with `cut`, sends half of each file after announcing all of it, then hangs up."
    requests: list = []
    cut = False

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        if not type(self).cut:
            return super().do_GET()
        data = open(self.translate_path(self.path), "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


@pytest.fixture
def publisher(tmp_path, monkeypatch):
    "A local server publishing tmp_path/served, a fresh TORCH_HOME, and the registry pointed at the server."
    served = tmp_path / "served"
    served.mkdir()
    handler = type("Handler", (Publisher,), {"requests": [], "cut": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(WEIGHTS_URL_ENV, f"http://127.0.0.1:{server.server_port}/")
    yield served, handler
    server.shutdown()
    server.server_close()


def cache_files(tmp_path) -> list[str]:
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def ig65m_file(tmp_path_factory):
    "R(2+1)D-34 weights in the IG65M layout with a Kinetics head, as the release file holds them (random values)."
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / IG65M_KINETICS.file_name
    torch.save(r2plus1d_34(num_classes=400, ig65m=True).state_dict(), path)
    return path


def test_a_published_file_downloads_once_and_loads_by_name(publisher, ig65m_file, tmp_path):
    served, handler = publisher
    os.link(ig65m_file, served / ig65m_file.name)
    model = get_model("r2plus1d_34", num_classes=26, pretrained="published", progress=False)
    assert handler.requests == [f"/{ig65m_file.name}"] and cache_files(tmp_path) == [ig65m_file.name]
    published = torch.load(ig65m_file, weights_only=True)
    assert torch.equal(model.state_dict()["layer4.1.conv2.0.3.weight"], published["layer4.1.conv2.0.3.weight"])
    assert model.fc.out_features == 26  # the Kinetics head replaced
    get_model("r2plus1d_34_8_kinetics", num_classes=400, pretrained="published", progress=False)  # the same file
    assert len(handler.requests) == 1  # a warm cache opens no connection


def test_a_hash_mismatch_is_refused_and_nothing_stays_in_the_cache(publisher, tmp_path):
    served, _ = publisher
    file_name = MODELS["r2plus1d_18"].weights.file_name  # r2plus1d_18-91a641e6.pth: checked against 91a641e6
    torch.save(get_model("r2plus1d_18", num_classes=400).state_dict(), served / file_name)
    with pytest.raises(WeightsDownloadError, match=r'invalid hash value \(expected "91a641e6"'):
        get_model("r2plus1d_18", pretrained="published", progress=False)
    assert cache_files(tmp_path) == []


def test_a_connection_dropped_half_way_leaves_no_file_and_says_where_to_place_it(publisher, tmp_path):
    served, handler = publisher
    handler.cut = True
    weights = PublishedWeights("https://example.invalid/", "cut-short.pth")
    (served / "cut-short.pth").write_bytes(os.urandom(1 << 20))
    with pytest.raises(WeightsDownloadError, match=f"place it as {weights.cache_path}"):
        fetch_weights(weights, progress=False)
    assert cache_files(tmp_path) == []


def test_offline_the_error_names_the_url_the_path_and_the_reason_and_a_file_placed_there_works(tmp_path, monkeypatch,
                                                                                               ig65m_file):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the connection is refused
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(WEIGHTS_URL_ENV, f"http://127.0.0.1:{port}/")
    with pytest.raises(WeightsDownloadError) as refused:
        get_model("r2plus1d_34", pretrained="published", progress=False)
    message = str(refused.value)
    assert f"http://127.0.0.1:{port}/{ig65m_file.name}" in message and "Connection refused" in message
    assert f"place it as {IG65M_KINETICS.cache_path}" in message and cache_files(tmp_path) == []
    IG65M_KINETICS.cache_path.parent.mkdir(parents=True, exist_ok=True)
    os.link(ig65m_file, IG65M_KINETICS.cache_path)  # placed by hand, as the message says
    assert get_model("r2plus1d_34", pretrained="published", progress=False).fc.out_features == 26


def test_zoo_download_fetches_ahead_of_time_and_list_names_the_files(publisher, ig65m_file, tmp_path):
    served, _ = publisher
    os.link(ig65m_file, served / ig65m_file.name)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "tinyaction.zoo", "download", "r2plus1d_34_8_kinetics"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert cache_files(tmp_path) == [ig65m_file.name]
    listed = subprocess.run([sys.executable, "-m", "tinyaction.zoo", "list"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300).stdout
    rows = dict(line.split() for line in listed.splitlines())
    assert rows["r2plus1d_34_8_kinetics"] == ig65m_file.name and rows["r2plus1d_tiny"] == "-"
    refused = subprocess.run([sys.executable, "-m", "tinyaction.zoo", "download", "r2plus1d_tiny"], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "no published weights for ['r2plus1d_tiny']" in refused.stderr


def test_the_2021_recipe_trains_from_published_weights(publisher, ig65m_file, synthetic_root, tmp_path):
    # the README's command with `--pretrained published`, on 2 clips of 16x112x112 for one epoch (R(2+1)D-34 on a CPU)
    served, handler = publisher
    os.link(ig65m_file, served / ig65m_file.name)
    root = copy_dataset(synthetic_root, tmp_path / "data")
    rewrite_split(root, "train", lambda records: records.__delitem__(slice(2, None)))
    rewrite_split(root, "val", lambda records: records.__delitem__(slice(1, None)))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = tmp_path / "recipe2021"
    done = subprocess.run([sys.executable, "-m", "tinyaction.train", "--data_dir", str(root), "--arch", "r2plus1d_34",
                           "--pretrained", "published", "--size", "112", "--clip_len", "16", "--epochs", "1",
                           "--batch_size", "2", "--lr", "1e-4", "--weight_decay", "1e-4", "--loss", "asl", "--cache", "False",
                           "--sampling", "random", "--num_workers", "0", "--out_dir", str(out)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert handler.requests == [f"/{ig65m_file.name}"] and "head replaced: ['fc.weight', 'fc.bias']" in done.stdout
    assert json.loads((out / "config.json").read_text())["pretrained"] == "published"


def test_every_published_entry_has_a_file_name_and_a_hash_where_its_name_carries_one():
    published = list_models(published=True)
    assert "r2plus1d_tiny" not in published and {"r2plus1d_34", "r2plus1d_18", "s3d", "r2plus1d_34_8_ig65m"} <= set(published)
    for name in published:
        weights = MODELS[name].weights
        assert weights.url.endswith("/" + weights.file_name)
        if weights.sha256 is not None:
            assert weights.file_name.split("-")[-1].startswith(weights.sha256)
