"""The API versions served. google-genai 3.x calls /v1, older SDKs and Google's curl samples /v1beta;
all get the same surface."""

API_VERSIONS = ("v1beta", "v1", "v1alpha")
