"""Speech around the text models: audio decoding (PyAV), speech-to-text (faster-whisper), text-to-speech
(Piper), voice activity (Silero VAD). Imported lazily: none of it loads until a request needs it."""
