"""The simulator's API 1.0 SIEM feed: ``/api/audit/get-siem-logs`` served as Mimecast serves it.

Log files are queued in order; a request without a token gets the first one, and every answer names
the next file in its ``mc-siem-token`` header. A file is served zipped (``compress: true``; several
files may share one zip) or plain, as JSON (``{"type": "MTA", "data": [...]}``) or key-value lines,
named ``<type>_<yyyymmddHHMMSSmmm>.<ext>`` in ``Content-Disposition``. Past the last file the answer
is JSON with no file: caught up. Faults are set per file index so tests can count on them: a zip cut
short, a member that is not JSON, a token handed back unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import random
import secrets
import string
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SIEM_PATH = "/api/audit/get-siem-logs"
SIEM_FAULTS = ("truncated", "bad_file", "repeat_token")
_OURS = "corp.example"
_USERS = ("alice", "bob", "carol", "dave", "erin", "frank")
_SENDERS = ("billing@invoices.example", "ceo@c0rp-example.com", "noreply@parcel-track.example")
_SUBJECTS = ("Invoice overdue", "Urgent wire transfer", "Shared document", "Meeting notes")
_FILE_PREFIX = {  # our type name -> the name Mimecast gives its files
    "receipt": "receipt",
    "process": "process",
    "delivery": "delivery",
    "av": "av",
    "spam": "spam",
    "journal": "jrnl",
    "ttp_url": "ttp_url",
    "ttp_attachment": "ttp_ap",
    "ttp_impersonation": "ttp_ip",
    "internal_email_protect": "ttp_iep",
}
SIEM_TYPES = tuple(_FILE_PREFIX)


class SiemRequestError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass
class SiemFile:
    log_type: str
    time: int  # epoch seconds of the file (its name carries it)
    records: list[dict[str, Any]]
    available_at: float = 0.0  # wall clock from which the feed hands it out


@dataclass
class SiemAnswer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def _datetime(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _token(rng: random.Random, size: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=size))


def _ip(rng: random.Random) -> str:
    return f"{rng.choice((185, 198, 203, 45))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def siem_record(log_type: str, rng: random.Random, epoch: int) -> dict[str, Any]:
    """One realistic record of ``log_type`` (fields as in Mimecast's SIEM log tables)."""
    sender, user = rng.choice(_SENDERS), f"{rng.choice(_USERS)}@{_OURS}"
    base: dict[str, Any] = {"acc": "C0A0", "datetime": _datetime(epoch), "aCode": _token(rng, 22)}
    msg_id = f"<{_token(rng, 16)}@mail.example>"
    if log_type == "receipt":
        rejected = rng.random() < 0.2
        base.update(
            Act="Rej" if rejected else "Acc",
            IP=_ip(rng),
            Dir="Inbound",
            Sender=sender,
            headerFrom=sender,
            Rcpt=user,
            MsgId=msg_id,
            Subject=rng.choice(_SUBJECTS),
            TlsVer="TLSv1.2",
            Cphr="TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            SpamScore=rng.randint(0, 30),
            SpamLimit=28,
            SpamInfo="[]",
        )
        if rejected:
            base.update(RejType="Invalid Recipient Address", RejCode="550", RejInfo="Invalid recipient")
    elif log_type == "process":
        held = rng.random() < 0.2
        base.update(
            Act="Hld" if held else "Acc",
            MsgId=msg_id,
            Sender=sender,
            AttCnt=1,
            AttNames='"invoice.pdf"',
            AttSize=rng.randint(1000, 90000),
            MsgSize=rng.randint(2000, 200000),
            Subject=rng.choice(_SUBJECTS),
            **({"Hld": "Spm"} if held else {}),
        )
    elif log_type == "delivery":
        delivered = rng.random() < 0.9
        base.update(
            Delivered=delivered,
            IP=_ip(rng),
            Dir="Inbound",
            Sender=sender,
            Rcpt=user,
            MsgId=msg_id,
            Subject=rng.choice(_SUBJECTS),
            Attempt=1,
            Latency=rng.randint(100, 9000),
            Snt=rng.randint(100, 90000),
            UseTls="Yes",
            TlsVer="TLSv1.2",
            Cphr="TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Route="Office365",
            ReceiptAck="250 2.6.0 Queued mail for delivery" if delivered else None,
            AttCnt=0,
            AttSize=0,
        )
        if not delivered:
            base.update(RejType="Recipient email address is possibly incorrect", RejCode="550")
    elif log_type in ("av", "ttp_attachment"):
        digest = hashlib.sha256(str(rng.random()).encode()).hexdigest()
        base.update(
            IP=_ip(rng),
            Sender=sender,
            SenderDomain=sender.split("@")[1],
            Recipient=user,
            Route="Inbound",
            fileName="invoice.xlsm",
            fileExt="xlsm",
            fileMime="application/vnd.ms-excel.sheet.macroEnabled.12",
            Size=rng.randint(1000, 2_000_000),
            md5=digest[:32],
            sha1=digest[:40],
            sha256=digest,
            MsgId=msg_id,
            Subject=rng.choice(_SUBJECTS),
        )
        if log_type == "av":
            base.update(Virus="Anomali:Phishing", CustomerIP="true", MimecastIP="false")
            del base["aCode"]  # AV lines carry no aCode (Elastic's table)
    elif log_type == "spam":
        base.update(SourceIP=_ip(rng), Sender=sender, headerFrom=sender, Recipient=user, Route="Inbound")
        base.update(SenderDomain=sender.split("@")[1], MsgId=msg_id, Subject=rng.choice(_SUBJECTS))
    elif log_type == "journal":
        base.update(Sender=user, Rcpt="journal@archive.example", RcptActType="Jnl", Dir="Internal")
    elif log_type == "ttp_url":
        del base["aCode"]
        base.update(
            reason="malicious",
            url=f"https://login-micros0ft.example/{_token(rng, 10)}",
            route="inbound",
            sourceIp=_ip(rng),
            sender=sender,
            recipient=user,
            action="Block",
            urlCategory="Phishing & Fraud",
            senderDomain=sender.split("@")[1],
            subject=rng.choice(_SUBJECTS),
            msgid=msg_id,
        )
    elif log_type == "ttp_impersonation":
        base.update(Action="Hold", Definition="Default Impersonation Definition", Hits="1", IP=_ip(rng))
        base.update(Sender=sender, Recipient=user, Route="Inbound", MsgId=msg_id, TaggedMalicious="true")
        base.update(Subject=rng.choice(_SUBJECTS), InternalName="true", NewDomain="false")
    elif log_type == "internal_email_protect":
        base.update(URL=f"https://docs.share-files.example/{_token(rng, 8)}", UrlCategory="Phishing & Fraud")
        base.update(ScanResultInfo="Blocked URL Category", Sender=user, Recipient=f"bob@{_OURS}", Route="Internal")
        base.update(MsgId=msg_id, Subject=rng.choice(_SUBJECTS))
    return base


def generate_siem_files(
    count: int,
    *,
    start: int,
    records_per_file: int = 50,
    types: tuple[str, ...] = SIEM_TYPES,
    seed: int = 0,
    spacing_secs: int = 60,
) -> list[SiemFile]:
    """``count`` files cycling through ``types``, ``spacing_secs`` apart from ``start``, each of
    ``records_per_file`` records timed within its first minute."""
    rng = random.Random(f"{seed}:siem")
    files = []
    for index in range(count):
        log_type = types[index % len(types)]
        epoch = start + spacing_secs * index
        records = [siem_record(log_type, rng, epoch + rng.randint(0, 59)) for _ in range(records_per_file)]
        files.append(SiemFile(log_type, epoch, records))
    return files


@dataclass
class SiemFeed:
    """The queue of files and the token chain over it."""

    files: list[SiemFile] = field(default_factory=list)
    files_per_answer: int = 1  # zipped answers hold this many files
    # file index -> fault served for it, while the count for that index lasts (see SIEM_FAULTS)
    faults: dict[int, str] = field(default_factory=dict)
    fault_times: int = 1
    send_token_when_caught_up: bool = False  # some collectors see the same token again; either is handled
    stats: Counter[str] = field(default_factory=Counter)
    records_served: int = 0
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    _faults_done: Counter[int] = field(default_factory=Counter)

    def add(self, files: list[SiemFile]) -> None:
        self.files.extend(files)

    def token_for(self, index: int) -> str:
        payload = orjson.dumps({"i": index, "t": int(time.time())})
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:10]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def index_of(self, token: str) -> int:
        """The index of the file a token names (tests check saved tokens with it)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, payload = raw[:10], raw[10:]
            if not hmac.compare_digest(mac, hmac.new(self._secret, payload, hashlib.sha256).digest()[:10]):
                raise ValueError
            return int(orjson.loads(payload)["i"])
        except (ValueError, KeyError, TypeError):
            raise SiemRequestError("err_siem_token_invalid", "token is not valid") from None

    def answer(self, body: Any) -> SiemAnswer:
        """The answer to one request body (already JSON-decoded)."""
        query = _parse(body)
        index = 0 if query["token"] is None else self.index_of(query["token"])
        now = time.time()
        take = self.files_per_answer if query["compress"] else 1
        indexes = []
        for i in range(index, min(index + take, len(self.files))):
            if self.files[i].available_at > now:
                break  # files become available in order: the next one is not ready yet
            indexes.append(i)
        if not indexes:
            self.stats["caught_up"] += 1
            headers = {"mc-siem-token": query["token"]} if query["token"] and self.send_token_when_caught_up else {}
            meta = {"status": 200, "isLastToken": True}
            return SiemAnswer(200, orjson.dumps({"meta": meta, "data": [], "fail": []}), "application/json", headers)
        fault = self.faults.get(index)
        if fault is not None and self._faults_done[index] < self.fault_times:
            self._faults_done[index] += 1
            self.stats[f"fault_{fault}"] += 1
        else:
            fault = None
        next_token = query["token"] if fault == "repeat_token" and query["token"] else self.token_for(indexes[-1] + 1)
        members = [(self._file_name(i, query["format"]), self._render(i, query["format"])) for i in indexes]
        if fault == "bad_file":
            members.append(("receipt_broken.json", b'{"data": [{"acc": "C0A0", "datetime": \x00\xff'))
        if query["compress"]:
            payload = _zip(members)
            name = f"{self.files[index].log_type}_{_stamp(self.files[index].time)}.zip"
        else:
            name, payload = members[0]
        if fault == "truncated":
            payload = payload[: max(1, len(payload) * 2 // 3)]
        self.records_served += sum(len(self.files[i].records) for i in indexes)
        self.stats["files"] += len(indexes)
        headers = {"mc-siem-token": next_token, "Content-Disposition": f'attachment; filename="{name}"'}
        return SiemAnswer(200, payload, "application/octet-stream", headers)

    def _file_name(self, index: int, file_format: str) -> str:
        siem_file = self.files[index]
        ext = "json" if file_format == "json" else "log"
        return f"{_FILE_PREFIX[siem_file.log_type]}_{_stamp(siem_file.time)}{index % 1000:03d}.{ext}"

    def _render(self, index: int, file_format: str) -> bytes:
        records = self.files[index].records
        if file_format == "json":
            return orjson.dumps({"type": "MTA", "data": records})
        lines = ("|".join(f"{k}={'' if v is None else v}" for k, v in record.items()) for record in records)
        return "\r\n".join(lines).encode()


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%d%H%M%S")


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def _parse(body: Any) -> dict[str, Any]:
    """Validate a request body as strictly as the real API might; SiemRequestError says what is wrong."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
        raise SiemRequestError("err_validation_failed", "data must hold exactly one object")
    request = data[0]
    unknown = set(request) - {"type", "token", "fileFormat", "compress"}
    if unknown:
        raise SiemRequestError("err_validation_failed", f"unknown fields: {sorted(unknown)}")
    if request.get("type") != "MTA":
        raise SiemRequestError("err_validation_failed", "type must be MTA")
    file_format = request.get("fileFormat", "key_value")
    if file_format not in ("json", "key_value"):
        raise SiemRequestError("err_validation_failed", "fileFormat must be json or key_value")
    compress = request.get("compress", False)
    if not isinstance(compress, bool):
        raise SiemRequestError("err_validation_failed", "compress must be a boolean")
    token = request.get("token")
    if token is not None and (not isinstance(token, str) or not token):
        raise SiemRequestError("err_validation_failed", "token must be a non-empty string")
    return {"token": token, "format": file_format, "compress": compress}
