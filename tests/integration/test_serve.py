"""The Serve app over real HTTP on 127.0.0.1: round trips in several orientations and DICOM,
statistics, security limits, concurrency, a killed replica and a model reload."""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
import pytest
import requests
from job_helpers import free_port, run_job
from nibabel import orientations as nio
from ray import serve
from scipy import ndimage

from livseg.evaluate import calibrate_before_registering, certainty_limit
from livseg.io import nifti_bytes, read_volume, to_canonical
from livseg.registry import register
from livseg.serve import REPORT_HEADER, ServeSettings, start_app
from livseg.synthetic import generate_case, write_case_dicom
from livseg.train import read_meta

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def model(trained_unet, shards, tmp_path_factory):
    """The session's trained U-Net with its review limit calibrated on the validation split (as
    the jobs do before registering), registered as the current model of this module's registry."""
    checkpoint = str(tmp_path_factory.mktemp("calibrated") / "unet")
    shutil.copytree(trained_unet, checkpoint)  # the shared checkpoint stays untouched
    print(calibrate_before_registering(checkpoint, shards))
    review = read_meta(checkpoint)["review"]
    registry = str(tmp_path_factory.mktemp("serve-models"))
    register(registry, "livseg", checkpoint)
    return {"registry": registry, "checkpoint": checkpoint, "review": review}


@pytest.fixture(scope="module")
def app(ray_session, model, tmp_path_factory, s3_server, monkeypatch_module):
    """The app on a free port with a token, 2 model replicas, a local root and an S3 root."""
    archive = tmp_path_factory.mktemp("archive")
    bucket = s3_server("serve-archive")
    monkeypatch_module.setenv("LIVSEG_SERVE_TOKEN", TOKEN)
    settings = ServeSettings(
        model=f"{model['registry']}/livseg", port=free_port(), roots=(str(archive), bucket),
        max_body_mb=8, max_voxels=64 * 64 * 256, min_replicas=2, max_replicas=2,
        cpus_per_replica=0.5,
        reload_interval_s=3600,  # min_certainty unset: the model's calibrated limit applies
    )  # fmt: skip
    url = start_app(settings)
    yield {"url": url, "archive": archive, "bucket": bucket, **model}
    serve.shutdown()  # the next module starts Serve with its own HTTP options


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _oriented(case, axcodes: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ct, labels, affine) of a generated case stored in the voxel order ``axcodes``."""
    ct, affine, _ = to_canonical(case.ct, case.affine)
    labels, _, _ = to_canonical(case.labels, case.affine)
    ornt = nio.ornt_transform(nio.axcodes2ornt("RAS"), nio.axcodes2ornt(tuple(axcodes)))
    out_affine = affine @ nio.inv_ornt_aff(ornt, ct.shape)
    return (
        np.ascontiguousarray(nio.apply_orientation(ct, ornt)).astype(np.int16),
        np.ascontiguousarray(nio.apply_orientation(labels, ornt)),
        out_affine,
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def _mask(response: requests.Response) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(response.content))


def _independent_statistics(mask: np.ndarray, affine: np.ndarray) -> dict:
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    _, count = ndimage.label(mask == 2, structure=np.ones((3, 3, 3)))
    return {"liver_ml": (mask >= 1).sum() * voxel_ml, "tumour_ml": (mask == 2).sum() * voxel_ml,
            "tumour_count": count}  # fmt: skip


@pytest.mark.parametrize("axcodes", ["RAS", "LAS", "LPS"])
def test_nifti_round_trip_keeps_the_grid(app, axcodes):
    case = generate_case(300 + len(axcodes) + ord(axcodes[1]), seed=41, size=64)
    ct, labels, affine = _oriented(case, axcodes)
    body = nifti_bytes(ct, affine, compress=axcodes != "LAS")  # .nii and .nii.gz bodies
    response = requests.post(f"{app['url']}/v1/segment", data=body, headers=AUTH, timeout=120)
    assert response.status_code == 200, response.text
    mask = _mask(response)
    assert mask.shape == ct.shape
    assert np.allclose(mask.affine, affine, atol=1e-4)
    assert "".join(nio.aff2axcodes(mask.affine)) == axcodes
    predicted = np.asarray(mask.dataobj)
    assert _dice(predicted >= 1, labels >= 1) >= 0.8
    report = json.loads(response.headers[REPORT_HEADER])
    expected = _independent_statistics(predicted, affine)
    stats = report["statistics"]
    assert stats["liver_ml"] == pytest.approx(expected["liver_ml"], abs=0.1)
    assert stats["tumour_ml"] == pytest.approx(expected["tumour_ml"], abs=0.01)
    assert stats["tumour_count"] == expected["tumour_count"]
    assert report["model"]["version"] == "v0001" and report["model"]["arch"] == "unet"
    # A clean, whole study, held to the limit calibrated on the model's validation cases.
    review = app["review"]
    assert review["min_certainty"] == certainty_limit(list(review["certainty"].values()), 0.94)
    assert report["qa"]["min_certainty"] == review["min_certainty"]
    assert report["qa"]["review"] is False, report["qa"]


def test_degraded_studies_are_flagged_for_review(app):
    """Heavy noise lowers the model's confidence; a volume cut through the liver touches an
    edge. The clean study (above) is not flagged. Whether the noise crosses a confidence limit
    depends on the model: the U-Net trained on the generated data with sharp-kernel noise stays
    at ≈ 0.95 under σ = 600 HU, so only the drop is asserted here."""
    case = generate_case(330, seed=45, size=64)
    ct, labels, affine = _oriented(case, "RAS")
    rng = np.random.default_rng(1)
    noisy = ct + rng.normal(0, 600, ct.shape)
    z = np.flatnonzero((labels > 0).any(axis=(0, 1)))
    cut = ct[:, :, (z[0] + z[-1]) // 2 :]
    reports = {}
    for name, volume in (("clean", ct), ("noisy", noisy), ("cut", cut)):
        body = nifti_bytes(volume.astype(np.int16), affine)
        response = requests.post(f"{app['url']}/v1/segment", data=body, headers=AUTH, timeout=120)
        assert response.status_code == 200, response.text
        reports[name] = json.loads(response.headers[REPORT_HEADER])["qa"]
    assert not reports["clean"]["review"], reports
    assert reports["noisy"]["confidence"] < reports["clean"]["confidence"], reports
    assert reports["cut"]["review"] and any("edge" in r for r in reports["cut"]["reasons"])


def test_dicom_series_by_uri_local_and_s3(app):
    import boto3

    case = generate_case(310, seed=41, size=64)
    folder = app["archive"] / "study-1"
    write_case_dicom(case, folder)
    output = app["archive"] / "out" / "study-1.nii.gz"
    response = requests.post(f"{app['url']}/v1/segment-uri", headers=AUTH, timeout=120,
                             json={"input": str(folder), "output": str(output)})  # fmt: skip
    assert response.status_code == 200, response.text
    mask = nib.load(output)
    series = read_volume(str(folder))
    assert mask.shape == series.source_shape  # the series' own grid (slices by position)
    assert np.allclose(mask.affine, series.source_affine, atol=1e-4)
    predicted, _, _ = to_canonical(np.asarray(mask.dataobj), mask.affine)
    truth, _, _ = to_canonical(case.labels, case.affine)  # the same voxels in RAS order
    assert _dice(predicted >= 1, truth >= 1) >= 0.8
    # the same study on S3: the replica reads and writes the bucket itself
    s3 = boto3.client("s3")
    bucket = app["bucket"].removeprefix("s3://")
    for path in sorted(folder.iterdir()):
        s3.upload_file(str(path), bucket, f"study-1/{path.name}")
    response = requests.post(
        f"{app['url']}/v1/segment-uri", headers=AUTH, timeout=120,
        json={"input": f"{app['bucket']}/study-1", "output": f"{app['bucket']}/out/1.nii.gz"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = s3.get_object(Bucket=bucket, Key="out/1.nii.gz")["Body"].read()
    assert np.array_equal(
        np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(body)).dataobj),
        np.asarray(mask.dataobj),
    )


def test_requests_without_the_token_are_refused(app):
    url = app["url"]
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{url}/v1/model", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-0123456789"}
    assert requests.get(f"{url}/v1/model", headers=wrong, timeout=10).status_code == 401
    assert requests.post(f"{url}/v1/segment", data=b"x", timeout=10).status_code == 401
    info = requests.get(f"{url}/v1/model", headers=AUTH, timeout=10).json()
    assert info["name"] == "livseg" and info["version"] == "v0001" and info["arch"] == "unet"


def test_bad_bodies_get_a_4xx_with_a_message(app):
    url = f"{app['url']}/v1/segment"
    rng = np.random.default_rng(0)
    oversize = requests.post(url, data=rng.bytes(9 * 2**20), headers=AUTH, timeout=60)
    assert oversize.status_code == 413 and "limit" in oversize.json()["detail"]
    bomb = gzip.compress(bytes(64 * 2**20))  # 64 MiB of zeros in 64 KiB: inflated ≤ the limit
    assert requests.post(url, data=bomb, headers=AUTH, timeout=60).status_code == 413
    huge = bytearray(nifti_bytes(np.zeros((8, 8, 8), np.int16), np.eye(4), compress=False))
    huge[42:48] = np.array([4000, 4000, 4000], "<i2").tobytes()  # dim[1:4]: 64 G voxels
    response = requests.post(url, data=bytes(huge), headers=AUTH, timeout=60)
    assert response.status_code == 413 and "voxels" in response.json()["detail"]
    garbage = requests.post(url, data=b"not a volume at all" * 100, headers=AUTH, timeout=60)
    assert garbage.status_code == 400 and "NIfTI" in garbage.json()["detail"]
    flat = nifti_bytes(np.zeros((64, 64), np.int16), np.eye(4))
    response = requests.post(url, data=flat, headers=AUTH, timeout=60)
    assert response.status_code == 422 and "2-D" in response.json()["detail"]
    four = nifti_bytes(np.zeros((32, 32, 16, 3), np.int16), np.eye(4))
    response = requests.post(url, data=four, headers=AUTH, timeout=60)
    assert response.status_code == 422 and "4-D" in response.json()["detail"]
    rgb = np.zeros((16, 16, 8), [("R", "u1"), ("G", "u1"), ("B", "u1")])
    response = requests.post(url, data=nifti_bytes(rgb, np.eye(4)), headers=AUTH, timeout=60)
    assert response.status_code == 422 and "voxel type" in response.json()["detail"]
    for _ in range(6):  # both replicas still serve
        assert requests.get(f"{app['url']}/v1/model", headers=AUTH, timeout=10).status_code == 200


def test_uris_outside_the_roots_are_forbidden(app):
    url = f"{app['url']}/v1/segment-uri"
    archive = str(app["archive"])
    for source, target in (
        (f"{archive}/../../etc", f"{archive}/out/x.nii.gz"),
        (f"{archive}/study-1", f"{archive}/../x.nii.gz"),
        ("s3://another-bucket/study-1", f"{archive}/out/x.nii.gz"),
        (f"{app['bucket']}/study-1", "s3://another-bucket/x.nii.gz"),
        ("/etc/passwd", f"{archive}/out/x.nii.gz"),
        (f"{archive}/study-1\u0000/x", f"{archive}/out/x.nii.gz"),
    ):
        response = requests.post(url, headers=AUTH, timeout=30,
                                  json={"input": source, "output": target})  # fmt: skip
        assert response.status_code == 403, (source, target, response.text)
        assert response.json()["detail"]


def _small_body(case_id: int) -> bytes:
    case = generate_case(case_id, seed=43, size=64)
    return nifti_bytes(case.ct[:, :, :24].astype(np.int16), case.affine)


def _post_with_retries(url: str, body: bytes, attempts: int = 20) -> tuple[int, int]:
    """POST like a careful client: retry on 503 and on dropped connections. Returns (status,
    attempts made)."""
    for attempt in range(1, attempts + 1):
        try:
            response = requests.post(url, data=body, headers=AUTH, timeout=120)
        except requests.ConnectionError:
            time.sleep(0.5)
            continue
        if response.status_code not in (502, 503, 504):
            return response.status_code, attempt
        time.sleep(0.5)
    return -1, attempts


def test_fifty_concurrent_requests_all_succeed(app):
    body = _small_body(320)
    url = f"{app['url']}/v1/segment"

    def post(_: int) -> int:
        return requests.post(url, data=body, headers=AUTH, timeout=300).status_code

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(post, range(50)))
    assert codes == [200] * 50


def test_a_killed_replica_loses_no_retried_request(app):
    import ray

    body = _small_body(321)
    url = f"{app['url']}/v1/segment"
    # Both replicas answer (a proxy may route to one alone until its view of the set updates:
    # once on CI all 20 quick requests in a row met one replica).
    replicas: set[str] = set()
    deadline = time.time() + 60
    while len(replicas) < 2 and time.time() < deadline:
        model = requests.get(f"{app['url']}/v1/model", headers=AUTH, timeout=10).json()
        replicas.add(model["replica"])
        time.sleep(0.05)
    assert len(replicas) == 2, replicas
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(_post_with_retries, url, body) for _ in range(16)]
        time.sleep(2.0)
        ray.kill(ray.get_actor(sorted(replicas)[0], namespace="serve"), no_restart=True)
        results = [f.result() for f in futures]
    assert [code for code, _ in results] == [200] * 16
    assert max(tries for _, tries in results) > 1, "no request was in flight on the killed replica"


def test_a_new_current_version_is_served_without_dropping_requests(app):
    """Clients post without pause while v0002 is promoted and the replicas reload: every
    request is answered on its first attempt, first by v0001, then by v0002."""
    body, url = _small_body(322), app["url"]
    stop, seen = threading.Event(), []  # (status, version) per request

    def client() -> None:
        while not stop.is_set():
            response = requests.post(f"{url}/v1/segment", data=body, headers=AUTH, timeout=120)
            report = json.loads(response.headers.get(REPORT_HEADER, "{}"))
            seen.append((response.status_code, report.get("model", {}).get("version")))

    def wait_for(condition, what: str) -> None:
        deadline = time.time() + 90
        while not condition():
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    with ThreadPoolExecutor(2) as pool:
        clients = [pool.submit(client) for _ in range(2)]
        try:
            wait_for(lambda: len(seen) >= 2, "requests before the promotion")
            register(app["registry"], "livseg", app["checkpoint"], force=True)
            versions: set = set()

            def all_reloaded() -> bool:  # each reload reaches one replica; others follow
                nonlocal versions
                requests.post(f"{url}/v1/reload", headers=AUTH, timeout=60)
                versions = {requests.get(f"{url}/v1/model", headers=AUTH, timeout=10)
                            .json()["version"] for _ in range(8)}  # fmt: skip
                return versions == {"v0002"}

            wait_for(all_reloaded, "every replica to load v0002")
            wait_for(lambda: sum(v == "v0002" for _, v in seen) >= 2, "answers by v0002")
        finally:
            stop.set()
            for future in clients:
                future.result()
    assert [code for code, _ in seen] == [200] * len(seen), seen
    assert {v for _, v in seen} == {"v0001", "v0002"}


def test_serve_job_refuses_an_open_address_without_a_token(monkeypatch, capsys):
    monkeypatch.delenv("LIVSEG_SERVE_TOKEN", raising=False)
    assert run_job("serve", ["--host", "0.0.0.0", "--model", "nowhere"]) == 2
    assert "no token is set" in capsys.readouterr().err


def test_without_a_token_only_a_proxy_we_start_on_loopback_serves(model, monkeypatch):
    """No token: refused while a Serve instance we did not start runs (its HTTP address is not
    ours to know); served once this call starts Serve's proxy itself on 127.0.0.1."""
    from livseg.errors import UsageError

    monkeypatch.delenv("LIVSEG_SERVE_TOKEN", raising=False)
    settings = ServeSettings(model=f"{model['registry']}/livseg", port=free_port())
    serve.start(proxy_location="Disabled")  # somebody's Serve (this module's app's, if alive)
    with pytest.raises(UsageError, match="no token is set"):
        start_app(settings)
    serve.shutdown()
    try:
        url = start_app(settings)
        response = requests.get(f"{url}/v1/model", timeout=30)  # no Authorization header
        assert response.status_code == 200 and response.json()["arch"] == "unet"
    finally:
        serve.shutdown()
