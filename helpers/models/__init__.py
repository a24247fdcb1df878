"""Models of the course. Each module starts with its Config dataclass; every field is used."""
from helpers.models.cvae import TextCVAE, TextCVAEConfig
from helpers.models.judge import CifarJudge, CifarJudgeConfig, DigitJudge, DigitJudgeConfig
from helpers.models.vae import ConvVAE, ConvVAEConfig, elbo_loss

__all__ = ["ConvVAE", "ConvVAEConfig", "elbo_loss", "TextCVAE", "TextCVAEConfig", "DigitJudge", "DigitJudgeConfig",
           "CifarJudge", "CifarJudgeConfig"]
