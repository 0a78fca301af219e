"""Images: which ones a tenant may run and build FROM (policy), how references and Dockerfiles are read
(refs, dockerfile), and the offline builder of the platform's own images (builder, databases)."""

from .builder import RECIPES, Recipe, build_images, host_debian_mirror
from .policy import ImagePolicy, OwnBuild, TenantBuilds

__all__ = ["RECIPES", "ImagePolicy", "OwnBuild", "Recipe", "TenantBuilds", "build_images", "host_debian_mirror"]
