"""One typed config: YAML, then `--key=value` overrides, checked all at once against the stage's fields.

- `schema`: kotune's own fields (dataset_mixture, prompt_format, ...) and the constants every config shares.
- `library_schema` + `library_fields.json`: TRL's and transformers' fields, stored, so checks need no heavy import.
- `types`: field types as JSON and coercing YAML values to them.
- `validation`: every key, type, range and combination checked at once; one ConfigError.
- `library`: TRL's ModelConfig/training config, LoraConfig and BitsAndBytesConfig built from the checked values.
- `loading`: YAML + overrides → RunConfig, with no side effects.
"""

from kotune.config.loading import load_config, parse_overrides, read_config, read_yaml, set_dotted
from kotune.config.schema import DatasetMixture, DatasetSource, KotuneArguments, RunConfig
from kotune.config.validation import build_config

__all__ = ["DatasetMixture", "DatasetSource", "KotuneArguments", "RunConfig", "build_config", "load_config",
           "parse_overrides", "read_config", "read_yaml", "set_dotted"]
