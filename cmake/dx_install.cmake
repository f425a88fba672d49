# Install rules and the CMake package: find_package(dx CONFIG) works from an install prefix and,
# through the export() below, from this build tree.
include(CMakePackageConfigHelpers)

set(DX_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/dx")

install(TARGETS dx dx_plugin EXPORT dxTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/dx" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")
install(FILES "${DX_GENERATED_INCLUDE}/dx/export.hpp" "${DX_GENERATED_INCLUDE}/dx/version.hpp"
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dx)

install(EXPORT dxTargets NAMESPACE dx:: DESTINATION ${DX_CMAKE_DIR})
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/dxConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/dxConfig.cmake" INSTALL_DESTINATION ${DX_CMAKE_DIR})
# 0.x releases promise compatibility within a minor version only.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/dxConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/dxConfig.cmake" "${PROJECT_BINARY_DIR}/dxConfigVersion.cmake"
  DESTINATION ${DX_CMAKE_DIR})

export(EXPORT dxTargets NAMESPACE dx:: FILE "${PROJECT_BINARY_DIR}/dxTargets.cmake")
