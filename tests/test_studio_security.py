"""The studio shared with a team, safely: sign-in beyond 127.0.0.1, no file outside the configured folders
through any path-taking field, uploads bounded in size, count and pixels. Every refusal is a 4xx with one
clear message."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient  # noqa: E402

from atelier.api.uploads import UploadLimits  # noqa: E402
from atelier.serve import create_app  # noqa: E402
from atelier.serve.settings import StudioSettings, is_loopback  # noqa: E402
from conftest import make_picture_zip, make_pictures, one_line_error, run_cli  # noqa: E402

TOKEN = "a-long-enough-test-token-0123456789"


def _detail(resp, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    detail = resp.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


def _png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (tiny on disk: a decompression bomb when large)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link, as `zip --symlinks` writes it
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.fixture
def studio(tiny_run, tmp_path):
    """An open (loopback) studio with one data root holding pictures and a link that leads out of it."""
    root = tmp_path / "data"
    make_pictures(root / "pictures", n=8)
    (root / "escape").symlink_to("/etc")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / tiny_run.name).symlink_to(tiny_run, target_is_directory=True)
    limits = UploadLimits(max_zip_bytes=400_000, max_unpacked_bytes=2_000_000, max_files=100,
                          max_image_pixels=512 * 512)
    settings = StudioSettings(home=tmp_path / "home", data_roots=(root,), upload=limits)
    with TestClient(create_app(runs, settings=settings)) as c:
        c.runs = runs
        yield c


# ------------------------------------------------------------------------------------------- signing in
def test_binding_beyond_this_machine_needs_a_token_or_users(tiny_run, tmp_path, monkeypatch):
    monkeypatch.delenv("ATELIER_TOKEN", raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    res = run_cli("serve", "--runs", tiny_run.parent, "--home", tmp_path / "home", "--host", "0.0.0.0", ok=False)
    one_line_error(res, r"refusing to serve on 0\.0\.0\.0 without an access token.*ATELIER_TOKEN")
    monkeypatch.setenv("ATELIER_TOKEN", "short")
    res = run_cli("serve", "--runs", tiny_run.parent, "--home", tmp_path / "home", "--host", "0.0.0.0", ok=False)
    one_line_error(res, r"the access token must have at least 16 characters")


def test_with_a_token_every_api_request_must_sign_in(tiny_run, tmp_path):
    settings = StudioSettings(home=tmp_path / "home", token=TOKEN)
    with TestClient(create_app(tiny_run.parent, settings=settings)) as c:
        assert c.get("/").status_code == 200 and c.get("/static/studio.js").status_code == 200  # the sign-in page
        assert c.get("/api/health").status_code == 200
        for path in ("/api/models", "/api/gallery", "/api/jobs", "/openapi.json", "/docs",
                     f"/api/models/{tiny_run.name}/thumbnail"):
            assert "sign in first" in _detail(c.get(path), 401), path
        assert "sign in first" in _detail(c.post("/api/generate", json={"model": tiny_run.name, "n": 1}), 401)
        assert c.get("/api/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/api/models", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert c.get("/api/session").json() == {"required": True, "user": None, "users": False, "token": True}
        assert "wrong access token" in _detail(c.post("/api/login", json={"password": "nope"}), 401)
        ok = c.post("/api/login", json={"password": TOKEN})
        assert ok.status_code == 200 and ok.json()["user"] == "token"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert c.get("/api/models").status_code == 200  # the session cookie
        assert c.get("/api/session").json()["user"] == "token"
        value = c.cookies["atelier_session"]
        c.cookies.set("atelier_session", value[:-2] + ("00" if not value.endswith("00") else "11"))
        assert c.get("/api/models").status_code == 401  # a tampered session
        c.post("/api/logout")
        c.cookies.clear()
        assert c.get("/api/models").status_code == 401


def test_users_sign_in_with_scrypt_hashed_passwords_and_failures_are_limited(tiny_run, tmp_path):
    import sqlite3

    from atelier.api.users import add_user, check_password

    settings = StudioSettings(home=tmp_path / "home").resolved([tiny_run.parent])
    add_user(settings.db_url, "ana", "correct horse battery")
    stored = sqlite3.connect(tmp_path / "home" / "studio.db").execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("scrypt$16384$8$1$") and "horse" not in stored
    assert check_password("correct horse battery", stored) and not check_password("wrong", stored)
    res = run_cli("user", "add", "bo", "--runs", tiny_run.parent, "--home", tmp_path / "home", "--password", "short",
                  ok=False)
    one_line_error(res, r"a password needs at least 8 characters")
    assert run_cli("user", "list", "--runs", tiny_run.parent, "--home", tmp_path / "home").output == "ana\n"
    with TestClient(create_app(tiny_run.parent, settings=settings)) as c:
        assert c.get("/api/models").status_code == 401  # users exist: signing in is required
        assert "wrong user name or password" in _detail(
            c.post("/api/login", json={"user": "ana", "password": "correct horse"}), 401)
        assert "wrong user name or password" in _detail(
            c.post("/api/login", json={"user": "nobody", "password": "correct horse battery"}), 401)
        assert c.post("/api/login", json={"user": "ana", "password": "correct horse battery"}).json() == {"user": "ana"}
        assert c.get("/api/models").status_code == 200
        for _ in range(8):
            c.post("/api/login", json={"user": "ana", "password": "guess"})
        assert "too many failed sign-ins" in _detail(c.post("/api/login", json={"user": "ana", "password": "x"}), 429)


# ------------------------------------------------------------------------------------- path traversal
def test_no_path_taking_field_reaches_outside_the_configured_folders(studio, tmp_path):
    c = studio
    secret = tmp_path / "home" / "studio.db"
    assert secret.is_file()
    # Run names (models): looked up by name, never joined to a path.
    for name in ("..%2F..%2Fhome%2Fstudio.db", "%2e%2e", "..", "tiny-dcgan%2F..%2F..%2Fhome"):
        for suffix in ("", "/thumbnail", "/example"):
            resp = c.get(f"/api/models/{name}{suffix}")
            # a name that is no model, or (with its slashes decoded) a path that is no endpoint
            assert resp.status_code == 404 and resp.json()["detail"].startswith(("no model named", "Not Found")), (
                name, suffix, resp.text)
    # Job ids and gallery image ids are integers.
    for path in ("/api/jobs/..%2F1", "/api/jobs/1%2F..%2F..%2Fhome", "/api/gallery/..%2Fstudio.db/image.png",
                 "/api/jobs/99999999999999999999999/grid.png"):
        assert c.get(path).status_code in (404, 422), path
    assert "no job 7" in _detail(c.get("/api/jobs/7/log"), 404)
    assert "no image 7" in _detail(c.get("/api/gallery/7/image.png"), 404)
    # Dataset ids: looked up, never joined to a path.
    for ds in ("..%2F..%2Fhome", "..", "%2e%2e%2fstudio.db", "%2e%2e", "ab12"):
        assert _detail(c.get(f"/api/datasets/{ds}/sheet.png"), 404).startswith(("no dataset", "Not Found")), ds
    assert "no dataset '..'" in _detail(c.get("/api/datasets/%2e%2e/sheet.png"), 404)
    # Folder picks: relative to a data root, and inside it after following links.
    for bad, why in (("../", "outside the data root"), ("pictures/../../home", "outside the data root"),
                     ("/etc", "must be relative"), ("escape", "a link leads out"), ("C:\\Windows", "must be relative"),
                     ("nope", "no folder")):
        assert why in _detail(c.get("/api/folders", params={"path": bad}), 400), bad
        assert why in _detail(c.post("/api/datasets/folder", json={"root": 0, "path": bad}), 400), bad
    assert "no data root 3" in _detail(c.get("/api/folders", params={"root": 3}), 404)
    assert c.get("/api/folders").json()["folders"] == ["escape", "pictures"]  # names only, no server paths
    # New run names: one path component.
    ds = c.post("/api/datasets/folder", json={"root": 0, "path": "pictures"}).json()["id"]
    for name in ("../evil", "/abs", "a/b", "..", ".hidden", "x" * 65):
        assert "is not allowed" in _detail(c.post("/api/jobs", json={"dataset": ds, "name": name}), 400), name
    assert not (c.runs.parent / "evil").exists()
    # Recipe keys that name files are refused: the data is the dataset's own folder.
    for extra, why in (("data.source=/etc", "not settable from the studio"), ("eval.ref=/etc/x", "not settable"),
                       ("data.eval_source=../x", "not settable"), ("model.style=/etc/passwd", "not settable"),
                       ("model.width=/etc/passwd", "a path is not accepted")):
        assert why in _detail(c.post(f"/api/datasets/{ds}/plan", json={"extra": extra}), 400), extra


@pytest.mark.parametrize(("entries", "links", "why"), [
    ({"../evil.png": _png(8, 8)}, (), "points outside the archive's folder"),
    ({"ok/../../evil.png": _png(8, 8)}, (), "points outside the archive's folder"),
    ({"/etc/evil.png": _png(8, 8)}, (), "has an absolute path"),
    ({"C:\\evil.png": _png(8, 8)}, (), "has an absolute path"),
    ({"a.png": _png(8, 8)}, ("link.png",), "is a symbolic link"),
    ({"readme.txt": b"no pictures here"}, (), "holds no images"),
])
def test_zip_entries_that_would_escape_are_refused(studio, entries, links, why):
    resp = studio.post("/api/datasets", files={"file": ("up.zip", _zip(entries, links), "application/zip")})
    assert why in _detail(resp, 400)
    home = studio.runs.parent / "home"
    assert not list(home.rglob("evil.png")) and not list(studio.runs.parent.glob("evil.png"))
    assert not (home / "datasets").exists() or not any((home / "datasets").iterdir())  # nothing left behind


def test_uploads_are_bounded_in_size_count_and_pixels(studio, tmp_path):
    def upload(data: bytes):
        return studio.post("/api/datasets", files={"file": ("up.zip", data, "application/zip")})

    assert "not a readable .zip" in _detail(upload(b"PK this is not a zip"), 400)
    assert "this server accepts at most 1,448,576 here" in _detail(upload(b"\0" * 2_000_000), 413)  # the body
    # A decompression bomb: a few kilobytes that would inflate to 5 MB (the limit here is 2 MB).
    bomb = _zip({"bomb.png": b"\0" * 5_000_000})
    assert len(bomb) < 20_000
    assert "would unpack to 5,000,000 bytes" in _detail(upload(bomb), 413)
    # The same, with sizes that lie in the archive's headers: caught while inflating.
    liar = bytearray(bomb)
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory: size fields
        at = liar.find(sig)
        liar[at + offset : at + offset + 4] = struct.pack("<I", 1000)
    assert "bomb.png" in _detail(upload(bytes(liar)), 400)
    assert "holds 101 files; the limit is 100" in _detail(upload(_zip({f"{i}.png": _png(8, 8) for i in range(101)})),
                                                          413)
    assert "is 4000x4000 = 16,000,000 pixels; the limit is 262,144" in _detail(
        upload(_zip({"a.png": _png(8, 8), "big.png": _png(4000, 4000)})), 400)
    assert "too large to decode safely" in _detail(upload(_zip({"huge.png": _png(60_000, 60_000)})), 400)
    # Within the limits: accepted.
    ok = upload(make_picture_zip(tmp_path / "ok.zip", n=8).read_bytes())
    assert ok.status_code == 201 and ok.json()["summary"]["n_images"] == 8
    assert ok.json()["sheet"] == f"/api/datasets/{ok.json()['id']}/sheet.png"
    assert str(tmp_path) not in ok.text  # no server path in what the page sees
