"""Google's enums, with the proto numbers where the published protos define them."""

from __future__ import annotations

from localgem.types.wire import wire_enum

_HARM_CATEGORIES = [
    "HARM_CATEGORY_UNSPECIFIED",
    "HARM_CATEGORY_DEROGATORY",
    "HARM_CATEGORY_TOXICITY",
    "HARM_CATEGORY_VIOLENCE",
    "HARM_CATEGORY_SEXUAL",
    "HARM_CATEGORY_MEDICAL",
    "HARM_CATEGORY_DANGEROUS",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
    "HARM_CATEGORY_JAILBREAK",
]
#: The categories generateContent takes; the six before them are PaLM-era.
GEMINI_HARM_CATEGORIES = frozenset(_HARM_CATEGORIES[7:])
#: The PaLM text service's categories (generateText).
PALM_HARM_CATEGORIES = tuple(_HARM_CATEGORIES[1:7])
#: generateAnswer's: the first four Gemini ones.
ANSWER_HARM_CATEGORIES = tuple(_HARM_CATEGORIES[7:11])


def _numbered(values: list[str], known: int | None = None) -> dict[str, int]:
    """Proto numbers follow declaration order for these enums (first ``known`` values published)."""
    return {v: i for i, v in enumerate(values[: known if known is not None else len(values)])}


HarmCategory = wire_enum("HarmCategory", _HARM_CATEGORIES, _numbered(_HARM_CATEGORIES, 12))
_THRESHOLDS = [
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
]
HarmBlockThreshold = wire_enum("HarmBlockThreshold", _THRESHOLDS, _numbered(_THRESHOLDS))
_PROBABILITIES = ["HARM_PROBABILITY_UNSPECIFIED", "NEGLIGIBLE", "LOW", "MEDIUM", "HIGH"]
HarmProbability = wire_enum("HarmProbability", _PROBABILITIES, _numbered(_PROBABILITIES))

_SERVICE_TIERS = ["unspecified", "standard", "flex", "priority"]
ServiceTier = wire_enum("ServiceTier", _SERVICE_TIERS, {})
_MEDIA_RESOLUTIONS = [
    "MEDIA_RESOLUTION_UNSPECIFIED",
    "MEDIA_RESOLUTION_LOW",
    "MEDIA_RESOLUTION_MEDIUM",
    "MEDIA_RESOLUTION_HIGH",
    "MEDIA_RESOLUTION_ULTRA_HIGH",
]
MediaResolution = wire_enum("MediaResolution", _MEDIA_RESOLUTIONS[:4], _numbered(_MEDIA_RESOLUTIONS, 4))
MediaResolutionLevel = wire_enum("MediaResolutionLevel", _MEDIA_RESOLUTIONS, _numbered(_MEDIA_RESOLUTIONS, 4))
# GenerationConfig.Modality (AUDIO=3) differs from the content Modality below (VIDEO=3, AUDIO=4).
_RESPONSE_MODALITIES = ["MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO", "VIDEO"]
ResponseModality = wire_enum("GenerationConfig.Modality", _RESPONSE_MODALITIES, _numbered(_RESPONSE_MODALITIES, 4))
_MODALITIES = ["MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT"]
Modality = wire_enum("Modality", _MODALITIES, _numbered(_MODALITIES))
MediaProcessing = wire_enum("MediaProcessing", ["MEDIA_PROCESSING_UNSPECIFIED", "STATIC", "AGENTIC"], {})
TranscriptionMode = wire_enum("AudioTranscriptionConfig.Mode", ["MODE_UNSPECIFIED", "VERBATIM", "SMART"], {})
_TYPES = ["TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"]
SchemaType = wire_enum("Type", _TYPES, _numbered(_TYPES))
ThinkingLevel = wire_enum("ThinkingLevel", ["THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"], {})
SafetyPolicy = wire_enum(
    "SafetyPolicy",
    [
        "SAFETY_POLICY_UNSPECIFIED",
        "FINANCIAL_TRANSACTIONS",
        "SENSITIVE_DATA_MODIFICATION",
        "COMMUNICATION_TOOL",
        "ACCOUNT_CREATION",
        "DATA_MODIFICATION",
        "USER_CONSENT_MANAGEMENT",
        "LEGAL_TERMS_AND_AGREEMENTS",
    ],
    {},
)
_ENVIRONMENTS = ["ENVIRONMENT_UNSPECIFIED", "ENVIRONMENT_BROWSER", "ENVIRONMENT_MOBILE", "ENVIRONMENT_DESKTOP"]
ComputerUseEnvironment = wire_enum("ComputerUse.Environment", _ENVIRONMENTS, _numbered(_ENVIRONMENTS, 2))
_BEHAVIORS = ["UNSPECIFIED", "BLOCKING", "NON_BLOCKING"]
Behavior = wire_enum("FunctionDeclaration.Behavior", _BEHAVIORS, _numbered(_BEHAVIORS))
_CALLING_MODES = ["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"]
FunctionCallingMode = wire_enum("FunctionCallingConfig.Mode", _CALLING_MODES, _numbered(_CALLING_MODES))
_OUTCOMES = ["OUTCOME_UNSPECIFIED", "OUTCOME_OK", "OUTCOME_FAILED", "OUTCOME_DEADLINE_EXCEEDED"]
Outcome = wire_enum("CodeExecutionResult.Outcome", _OUTCOMES, _numbered(_OUTCOMES))
Language = wire_enum(
    "ExecutableCode.Language", ["LANGUAGE_UNSPECIFIED", "PYTHON"], {"LANGUAGE_UNSPECIFIED": 0, "PYTHON": 1}
)
_SCHEDULINGS = ["SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"]
Scheduling = wire_enum("FunctionResponse.Scheduling", _SCHEDULINGS, _numbered(_SCHEDULINGS))
ToolType = wire_enum(
    "ToolType",
    ["TOOL_TYPE_UNSPECIFIED", "GOOGLE_SEARCH_WEB", "GOOGLE_SEARCH_IMAGE", "URL_CONTEXT", "GOOGLE_MAPS", "FILE_SEARCH"],
    {},
)
Delivery = wire_enum("Delivery", ["DELIVERY_UNSPECIFIED", "INLINE", "URI"], {})
AudioMimeType = wire_enum(
    "AudioResponseFormat.MimeType",
    ["MIME_TYPE_UNSPECIFIED", "AUDIO_MP3", "AUDIO_OGG_OPUS", "AUDIO_L16", "AUDIO_WAV", "AUDIO_ALAW", "AUDIO_MULAW"],
    {},
)
AspectRatio = wire_enum(
    "AspectRatio",
    [
        "ASPECT_RATIO_UNSPECIFIED",
        "ASPECT_RATIO_ONE_BY_ONE",
        "ASPECT_RATIO_TWO_BY_THREE",
        "ASPECT_RATIO_THREE_BY_TWO",
        "ASPECT_RATIO_THREE_BY_FOUR",
        "ASPECT_RATIO_FOUR_BY_THREE",
        "ASPECT_RATIO_FOUR_BY_FIVE",
        "ASPECT_RATIO_FIVE_BY_FOUR",
        "ASPECT_RATIO_NINE_BY_SIXTEEN",
        "ASPECT_RATIO_SIXTEEN_BY_NINE",
        "ASPECT_RATIO_TWENTY_ONE_BY_NINE",
        "ASPECT_RATIO_ONE_BY_EIGHT",
        "ASPECT_RATIO_EIGHT_BY_ONE",
        "ASPECT_RATIO_ONE_BY_FOUR",
        "ASPECT_RATIO_FOUR_BY_ONE",
    ],
    {},
)
ImageSize = wire_enum(
    "ImageSize",
    ["IMAGE_SIZE_UNSPECIFIED", "IMAGE_SIZE_FIVE_TWELVE", "IMAGE_SIZE_ONE_K", "IMAGE_SIZE_TWO_K", "IMAGE_SIZE_FOUR_K"],
    {},
)
ImageMimeType = wire_enum("ImageResponseFormat.MimeType", ["MIME_TYPE_UNSPECIFIED", "IMAGE_JPEG"], {})
TextMimeType = wire_enum("TextResponseFormat.MimeType", ["MIME_TYPE_UNSPECIFIED", "APPLICATION_JSON", "TEXT_PLAIN"], {})
DynamicRetrievalMode = wire_enum(
    "DynamicRetrievalConfig.Mode", ["MODE_UNSPECIFIED", "MODE_DYNAMIC"], {"MODE_UNSPECIFIED": 0, "MODE_DYNAMIC": 1}
)

FileState = wire_enum(
    "google.ai.generativelanguage.v1beta.File.State",
    ["STATE_UNSPECIFIED", "PROCESSING", "ACTIVE", "FAILED"],
    {"STATE_UNSPECIFIED": 0, "PROCESSING": 1, "ACTIVE": 2, "FAILED": 10},
)
FileSource = wire_enum(
    "google.ai.generativelanguage.v1beta.File.Source",
    ["SOURCE_UNSPECIFIED", "UPLOADED", "GENERATED", "REGISTERED"],
    {"SOURCE_UNSPECIFIED": 0, "UPLOADED": 1, "GENERATED": 2, "REGISTERED": 3},
)

_TASK_TYPES = [
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
]
TaskType = wire_enum("TaskType", _TASK_TYPES, _numbered(_TASK_TYPES))
