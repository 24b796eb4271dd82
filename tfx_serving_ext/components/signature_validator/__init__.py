"""SignatureValidator: refuses a model whose serving interface would break its clients."""

from tfx_serving_ext.components.signature_validator.component import (
    SignatureValidator,
    SignatureValidatorSpec,
)

__all__ = ["SignatureValidator", "SignatureValidatorSpec"]
