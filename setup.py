# setuptools needs a setup.py to hand the cffi build script to `build_ext`, and to build the static
# exec helper (csrc/exec_helper.c) next to the extension.
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildWithHelper(build_ext):
    """build_ext, plus pycontain/exec_helper: a static executable the runtime copies into a sealed memfd.

    musl-gcc when present: the helper is then ~17 KiB instead of glibc's ~670 KiB, and it is copied
    into memory on every container start (measured 14 us against 213 us for the copy).
    """

    def run(self) -> None:
        super().run()
        out = os.path.join(os.path.dirname(self.get_ext_fullpath("pycontain._native")), "exec_helper")
        cc = shutil.which("musl-gcc") or "gcc"
        subprocess.run([cc, "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", out,
                        "csrc/exec_helper.c"], check=True)


setup(cffi_modules=["csrc/build_native.py:ffibuilder"], cmdclass={"build_ext": BuildWithHelper})
