# Builds and runs a consumer project against dx. Run with cmake -P and:
#   MODE=install : install dx from BUILD_DIR into a fresh prefix, find_package it from there
#   MODE=subdir  : add dx's SOURCE_DIR to the consumer with add_subdirectory
#   WORK_DIR, SOURCE_DIR, BUILD_DIR, [LAUNCHER], and for MODE=install BINDIR, INCLUDEDIR, LIBDIR
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message("${out}")
endfunction()

set(extra "")
if(LAUNCHER)
  list(APPEND extra "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()

if(MODE STREQUAL "install")
  run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
  # The installed files a user reaches for: the tools, every public header, the package files.
  # (BINDIR, INCLUDEDIR and LIBDIR: the build's GNUInstallDirs, passed by the test)
  set(CMAKE_INSTALL_BINDIR "${BINDIR}")
  set(CMAKE_INSTALL_INCLUDEDIR "${INCLUDEDIR}")
  set(CMAKE_INSTALL_LIBDIR "${LIBDIR}")
  set(prefix "${WORK_DIR}/prefix")
  foreach(file ${CMAKE_INSTALL_BINDIR}/dx-worker ${CMAKE_INSTALL_BINDIR}/dx-sim ${CMAKE_INSTALL_INCLUDEDIR}/dx/dx.hpp
               ${CMAKE_INSTALL_INCLUDEDIR}/dx/log.hpp ${CMAKE_INSTALL_INCLUDEDIR}/dx/forecast.hpp
               ${CMAKE_INSTALL_INCLUDEDIR}/dx/export.hpp ${CMAKE_INSTALL_INCLUDEDIR}/dx/version.hpp
               ${CMAKE_INSTALL_LIBDIR}/cmake/dx/dxConfig.cmake ${CMAKE_INSTALL_LIBDIR}/cmake/dx/dxConfigVersion.cmake)
    if(NOT EXISTS "${prefix}/${file}")
      message(FATAL_ERROR "not installed: ${file}")
    endif()
  endforeach()
  file(GLOB headers RELATIVE "${SOURCE_DIR}/include" "${SOURCE_DIR}/include/dx/*.hpp" "${SOURCE_DIR}/include/dx/*/*.hpp")
  foreach(header ${headers})
    if(NOT EXISTS "${prefix}/${CMAKE_INSTALL_INCLUDEDIR}/${header}")
      message(FATAL_ERROR "header not installed: ${header}")
    endif()
  endforeach()
  # The installed tools run from the prefix.
  run("${prefix}/${CMAKE_INSTALL_BINDIR}/dx-worker" --help)
  run("${prefix}/${CMAKE_INSTALL_BINDIR}/dx-sim" --help)
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/consumer" -B "${WORK_DIR}/build"
      -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release ${extra})
elseif(MODE STREQUAL "subdir")
  # dx is compiled once more, from its sources: unoptimised (-O0), which takes half the time of a
  # Release build; what this checks is that dx builds and links as a subproject.
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/subdir_consumer" -B "${WORK_DIR}/build"
      -DDX_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 ${extra})
else()
  message(FATAL_ERROR "MODE must be install or subdir")
endif()
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j 2)
run("${WORK_DIR}/build/consumer")
