"""Image and video generation: Imagen-style ``models.predict`` (``predict``), Veo-style
``models.predictLongRunning`` as durable operations making ``generatedFiles`` (``videos``, ``executor``), the image
worker that draws for both ``predict`` and Gemini's IMAGE output (``studio``), and the Vertex AI paths the Python
SDK's ``generate_images``/``generate_videos`` call (``routes``). The pipelines themselves are
``engines.diffusion``."""
