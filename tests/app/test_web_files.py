"""The browser app's glue reads only files a user uploaded, whatever path an event hands it: the
second lock behind Gradio's own check (which `mount_gradio_app` once left off)."""

from __future__ import annotations

import pytest

from app.web import WebApp
from core.errors import MediaError
from core.settings import Settings
from tooling.inputs import make_photo


@pytest.fixture
def web(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    return WebApp(service=None, settings=Settings(), upload_dirs=[str(uploads)]), uploads


@pytest.mark.parametrize("path", ["/etc/hostname", "{uploads}/../secret.png", "{uploads}-evil/photo.png"])
def test_paths_outside_the_uploads_are_refused(web, tmp_path, path):
    app, uploads = web
    (tmp_path / "secret.png").write_text("secret")
    (tmp_path / "uploads-evil").mkdir()
    make_photo().save(tmp_path / "uploads-evil" / "photo.png")
    with pytest.raises(MediaError, match="not uploaded"):
        app.file_part(path.format(uploads=uploads))


def test_a_link_out_of_the_uploads_is_refused(web, tmp_path):
    app, uploads = web
    (tmp_path / "secret.png").write_text("secret")
    (uploads / "innocent.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(MediaError, match="not uploaded"):
        app.photo_by_voice(str(uploads / "innocent.png"), None, "What is it?", options=None).__next__()


def test_an_earlier_turn_naming_a_server_file_is_left_out(web):
    app, _ = web
    history = [{"role": "user", "content": [{"type": "file", "file": {"path": "/etc/hostname"}}, "hi"]}]
    messages = app.history_messages(history)
    assert [type(p).__name__ for m in messages for p in m.parts] == ["TextPart"]


def test_an_uploaded_photo_is_read(web):
    app, uploads = web
    make_photo().save(uploads / "photo.png")
    assert app.file_part(str(uploads / "photo.png")).image.size == (500, 300)


@pytest.mark.parametrize("path", ["/etc/hostname", "{uploads}/../secret.wav"])
def test_a_live_chunk_naming_a_server_file_is_refused(web, tmp_path, path):
    app, uploads = web
    (tmp_path / "secret.wav").write_text("secret")
    with pytest.raises(MediaError, match="not uploaded"):
        app.live_feed("session", path.format(uploads=uploads))
    app.live_close("session")
