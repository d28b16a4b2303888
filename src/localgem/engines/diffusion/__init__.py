"""Image and video generation on diffusers pipelines (PyTorch, CPU): a pipeline folder as ``save_pretrained``
writes it (Stable Diffusion 1.x/2.x/XL, SD-Turbo, SDXL-Turbo; text-to-video pipelines such as ModelScope's,
LTX-Video, Wan), loaded by ``DiffusionPipeline.from_pretrained`` from disk only. Images are drawn in the server's
process (``pipelines``); videos in a child process of their own (``video_worker``), encoded as MP4 by FFmpeg
(PyAV)."""
