"""The Live API: BidiGenerateContent over WebSocket, resumable sessions, ephemeral tokens."""
