"""Every record aposthog returns: frozen attrs classes, structured by aposthog's converter."""

from .customer_profile_configs import CustomerProfileConfig, ProfileScope

__all__ = ["CustomerProfileConfig", "ProfileScope"]
