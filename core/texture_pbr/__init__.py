"""PBR maps (height, normal, roughness, AO) derived from any albedo; they tile when it does."""

from .maps import (MAP_BIT_DEPTHS, PBRMaps, PBRSettings, ao_map, height_map, normal_map, pbr_maps, periodic_blur,
                   roughness_map, save_pbr_maps)

__all__ = ["MAP_BIT_DEPTHS", "PBRMaps", "PBRSettings", "ao_map", "height_map", "normal_map", "pbr_maps", "periodic_blur",
           "roughness_map", "save_pbr_maps"]
