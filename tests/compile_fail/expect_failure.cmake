# Passes when a source file fails to compile with a given message in the compiler's output. Run
# with cmake -P and:
#   COMPILER  the C++ compiler
#   SOURCE    the file that must not compile
#   FLAGS     the compiler flags, separated by '|'
#   MESSAGE   text the compiler's output must contain
cmake_minimum_required(VERSION 3.25)

foreach(var COMPILER SOURCE FLAGS MESSAGE)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "expect_failure.cmake: ${var} is not set")
  endif()
endforeach()

string(REPLACE "|" ";" flags "${FLAGS}")
execute_process(COMMAND "${COMPILER}" ${flags} "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(JOIN " " command "${COMPILER}" ${flags} "${SOURCE}")

if(rc EQUAL 0)
  message(FATAL_ERROR "compiled, but must not:\n  ${command}\n${out}${err}")
endif()
string(FIND "${out}${err}" "${MESSAGE}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "failed (${rc}) without \"${MESSAGE}\" in the output:\n  ${command}\n${out}${err}")
endif()
message(STATUS "failed to compile as expected, with \"${MESSAGE}\"")
