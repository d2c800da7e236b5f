"""langscale: run LangChain applications in production under real load."""

__version__ = "0.1.0"
