"""Builds the optional libjpeg-turbo coefficient reader (dctq.jpeg._turbo).

Metadata lives in pyproject.toml. The extension is optional: without libjpeg headers
(Debian: libjpeg62-turbo-dev) the build goes on and dctq falls back to jpeglib.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dctq.jpeg._turbo",
            sources=["jpeg/_turbo.c"],
            libraries=["jpeg"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
