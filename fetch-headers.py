#!/usr/bin/env python3
"""Fetches single header files out of NVIDIA's pip wheels without downloading the wheels.

    fetch-headers.py OUT_DIR PROJECT==VERSION:header.h[,header.h...] ...

A wheel is a zip file: this reads its central directory and the wanted members with HTTP range requests
(a few hundred kilobytes instead of hundreds of megabytes). The wheel is found on pip's package indexes
(`pip config list`: index-url, extra-index-url; default https://pypi.org/simple), file:// indexes included.
Prints each file fetched and the bytes transferred. Only the standard library is used.
"""
import html.parser
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile

PLATFORM_TAG = re.compile(r"-(manylinux[0-9_]*_x86_64|manylinux2014_x86_64)[.a-z0-9_]*\.whl$")


def pip_indexes():
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    main, extra = "https://pypi.org/simple", []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.endswith(".index-url") and not key.endswith("extra-index-url"):
            main = value
        elif key.endswith(".extra-index-url"):
            extra += value.split()
    main = os.environ.get("PIP_INDEX_URL", main)
    extra = os.environ.get("PIP_EXTRA_INDEX_URL", " ".join(extra)).split()
    return [main] + [u for u in extra if u != main]


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file, read with HTTP range requests (or a local file)."""

    def __init__(self, url):
        self.url, self.pos, self.transferred = url, 0, 0
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=60) as response:
            self.size = int(response.headers["Content-Length"])

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=io.SEEK_SET):
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def readinto(self, buffer):
        n = min(len(buffer), self.size - self.pos)
        if n <= 0:
            return 0
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.pos}-{self.pos + n - 1}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            if response.status != 206:
                raise OSError(f"{self.url}: the server ignores range requests (HTTP {response.status})")
            data = response.read(n)
        buffer[:len(data)] = data
        self.pos += len(data)
        self.transferred += len(data)
        return len(data)


def find_wheel(project, version):
    wanted = project.replace("-", "_").lower() + "-" + version + "-"
    tried = []
    for index in pip_indexes():
        page = index.rstrip("/") + "/" + project + "/"
        tried.append(page)
        if page.startswith("file:"):
            page += "index.html"  # a local PEP 503 index: one index.html per project folder
        try:
            with urllib.request.urlopen(page, timeout=60) as response:
                text = response.read().decode("utf-8", "replace")
        except OSError:
            continue
        links = Links()
        links.feed(text)
        for href in links.hrefs:
            url = urllib.parse.urljoin(page, href).split("#")[0]
            name = urllib.parse.unquote(url.rsplit("/", 1)[-1])
            if name.lower().startswith(wanted) and PLATFORM_TAG.search(name):
                return url
    sys.exit(f"fetch-headers: no linux x86_64 wheel of {project}=={version} on {', '.join(tried)}")


def extract(source, url, headers, out):
    """Writes the headers named from the wheel `source` (a seekable binary file) into `out`."""
    with zipfile.ZipFile(source) as wheel:
        members = {os.path.basename(n): n for n in wheel.namelist() if "/include/" in n}
        for header in headers:
            if header not in members:
                sys.exit(f"fetch-headers: {header} is not in {url}")
            with wheel.open(members[header]) as src, open(os.path.join(out, header), "wb") as dst:
                dst.write(src.read())


def fetch(url, headers, out):
    """Extracts the headers; returns (bytes transferred, size of the wheel)."""
    if url.startswith("file:"):
        path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        with open(path, "rb") as local:
            extract(local, url, headers, out)
        return 0, os.path.getsize(path)
    try:
        remote = RangeFile(url)
        extract(io.BufferedReader(remote, buffer_size=64 * 1024), url, headers, out)
        return remote.transferred, remote.size
    except OSError as e:  # no range requests (e.g. through a proxy): the whole wheel, once
        print(f"fetch-headers: {e}; downloading the whole wheel", flush=True)
        with tempfile.TemporaryFile() as whole:
            with urllib.request.urlopen(url, timeout=600) as response:
                shutil.copyfileobj(response, whole)
            size = whole.tell()
            extract(whole, url, headers, out)
        return size, size


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    total = 0
    for spec in sys.argv[2:]:
        requirement, _, names = spec.partition(":")
        project, _, version = requirement.partition("==")
        headers = names.split(",")
        url = find_wheel(project, version)
        transferred, size = fetch(url, headers, out)
        how = "a local index" if url.startswith("file:") else f"{transferred / 1024:.0f} KB transferred"
        print(f"fetch-headers: {', '.join(headers)} from {url.rsplit('/', 1)[-1]} "
              f"({how}, of the {size / 1048576:.0f} MB wheel)")
        total += transferred
    if total:
        print(f"fetch-headers: {total / 1024:.0f} KB transferred in all")


if __name__ == "__main__":
    main()
