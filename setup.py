# setuptools needs a setup.py only to hand the cffi build script to `build_ext`.
from setuptools import setup

setup(cffi_modules=["csrc/build_native.py:ffibuilder"])
